"""Deletion: one erasure of an account and its receipt (imported by privacy/models.py)."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

DELETION_ID_PREFIX = "del_"


class Deletion(models.Model):
    """One erasure of a user from every store, and the receipt that proves it.

    `user_id` is a plain column, not a foreign key: the row outlives the user it
    erased (the receipt is shown after the account is gone). The receipt token is
    shown once, in the POST's answer; only its SHA-256 is kept.
    """

    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user_id = models.UUIDField(db_index=True)
    status = models.CharField(
        max_length=16, choices=State.choices, default=State.QUEUED
    )
    requested_by = models.CharField(
        max_length=16, help_text="user (the API) or operator (./cli user purge)"
    )
    token_hash = models.CharField(max_length=64, help_text="sha256 of the token")
    receipt = models.JSONField(default=dict, blank=True)
    requested_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.public_id} ({self.status})"

    @property
    def public_id(self) -> str:
        return f"{DELETION_ID_PREFIX}{self.id}"
