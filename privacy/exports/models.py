"""DataExport: one GDPR export of a user's data, a zip in object storage."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

EXPORT_ID_PREFIX = "exp_"


class DataExport(models.Model):
    """One export a user (or an operator) asked for: its state, progress and zip.

    `parts_done`/`parts_total` are the job's progress; `object_key` is the zip
    under the user's prefix (`users/<id>/exports/`), kept until `expires_at`.
    """

    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        EXPIRED = "expired"  # succeeded; its zip was deleted after EXPORT_KEEP_HOURS

    class Format(models.TextChoices):
        JSON = "json"
        CSV = "csv"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,  # (user, created_at) leads with user
    )
    format = models.CharField(max_length=8, choices=Format.choices)
    status = models.CharField(
        max_length=16, choices=State.choices, default=State.QUEUED
    )
    parts_done = models.PositiveSmallIntegerField(default=0)
    parts_total = models.PositiveSmallIntegerField(default=0)
    object_key = models.CharField(max_length=512, blank=True)
    size_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    counts = models.JSONField(default=dict, blank=True, help_text="records per part")
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        app_label = "privacy"
        indexes = [
            models.Index(fields=["user", "-created_at"], name="privacy_export_user"),
            models.Index(
                fields=["expires_at"],
                name="privacy_export_expiring",
                condition=models.Q(status="succeeded"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} ({self.status})"

    @property
    def public_id(self) -> str:
        return f"{EXPORT_ID_PREFIX}{self.id}"
