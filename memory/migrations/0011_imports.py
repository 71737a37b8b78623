"""Imports: MemoryImport, and MemoryItem.external_id, unique per user when set.

Not atomic, like 0009 and 0010: the column has a constant default (metadata only,
no table rewrite) and the partial unique index over a large table is built
CONCURRENTLY, so the workers' writes are never locked out for the whole build.
"""

import uuid

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

CREATE_INDEX = """
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS memory_user_external_id
    ON memory_memoryitem (user_id, external_id) WHERE external_id <> ''
"""
DROP_INDEX = "DROP INDEX CONCURRENTLY IF EXISTS memory_user_external_id"


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("memory", "0010_embedding_repair"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="MemoryImport",
            fields=[
                ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ("format", models.CharField(choices=[("kimberly", "Kimberly"), ("chatgpt", "Chatgpt"), ("json", "Json")], max_length=16)),
                ("tier", models.CharField(max_length=16)),
                ("status", models.CharField(choices=[("queued", "Queued"), ("running", "Running"), ("succeeded", "Succeeded"), ("failed", "Failed")], default="queued", max_length=16)),
                ("file_key", models.CharField(blank=True, help_text="the stored file of a job, until done", max_length=255)),
                ("file_bytes", models.PositiveBigIntegerField(default=0)),
                ("total", models.PositiveIntegerField(default=0)),
                ("processed", models.PositiveIntegerField(default=0)),
                ("imported", models.PositiveIntegerField(default=0)),
                ("skipped_duplicate", models.PositiveIntegerField(default=0)),
                ("refused", models.PositiveIntegerField(default=0)),
                ("refusals", models.JSONField(blank=True, default=list)),
                ("skipped", models.JSONField(blank=True, default=dict)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                ("heartbeat_at", models.DateTimeField(blank=True, null=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                ("error", models.TextField(blank=True)),
                ("user", models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name="memory_imports", to=settings.AUTH_USER_MODEL)),
            ],
            options={
                "indexes": [models.Index(fields=["user", "-created_at"], name="memory_import_user")],
            },
        ),
        migrations.AddField(
            model_name="memoryitem",
            name="external_id",
            field=models.CharField(blank=True, db_default="", default="", max_length=255),
        ),
        # The constraint in the model state; in the database, the same partial
        # unique index built without blocking writes.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddConstraint(
                    model_name="memoryitem",
                    constraint=models.UniqueConstraint(condition=models.Q(("external_id", ""), _negated=True), fields=("user", "external_id"), name="memory_user_external_id"),
                ),
            ],
            database_operations=[migrations.RunSQL(CREATE_INDEX, DROP_INDEX)],
        ),
    ]
