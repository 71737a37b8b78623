"""MemoryImport (kept apart from memory/models.py, which imports it)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

IMPORT_ID_PREFIX = "imp_"
MAX_REFUSALS = 100  # refusals kept per import; the count covers them all


class MemoryImport(models.Model):
    """One import of a user's file: its state and counts (progress of a job).

    total = importable records found; processed = how many of them were handled
    (imported + skipped_duplicate + refused), in file order, so a job that is
    handed over or redelivered resumes at `processed`. `skipped` counts entries
    of the file that are not memories (assistant messages, ...), by reason.
    """

    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    class Format(models.TextChoices):
        KIMBERLY = "kimberly"
        CHATGPT = "chatgpt"
        JSON = "json"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="memory_imports",
        db_index=False,  # (user, created_at) leads with user
    )
    format = models.CharField(max_length=16, choices=Format.choices)
    tier = models.CharField(max_length=16)
    status = models.CharField(
        max_length=16, choices=State.choices, default=State.QUEUED
    )
    file_key = models.CharField(
        max_length=255,
        blank=True,
        help_text="the stored file of a job, until it is deleted",
    )
    # Set by each claim of the job; a worker writes progress only while the row
    # still carries its token (services._update), so one taken over stops.
    claim = models.UUIDField(null=True, blank=True, editable=False)
    file_bytes = models.PositiveBigIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    imported = models.PositiveIntegerField(default=0)
    skipped_duplicate = models.PositiveIntegerField(default=0)
    refused = models.PositiveIntegerField(default=0)
    refusals = models.JSONField(default=list, blank=True)
    skipped = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        app_label = "memory"
        indexes = [
            models.Index(fields=["user", "-created_at"], name="memory_import_user")
        ]

    def __str__(self) -> str:
        return self.public_id

    @property
    def public_id(self) -> str:
        return f"{IMPORT_ID_PREFIX}{self.id}"
