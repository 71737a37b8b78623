"""The Attachment model: an uploaded document, its object in storage, and the
memories its text was chunked into (MemoryItem.attachment). Registered by the
import in memory/models.py (MemoryItem.attachment points here)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone

from memory.constants import Tier

ATTACHMENT_ID_PREFIX = "att_"


class Attachment(models.Model):
    """One document a user uploaded: its bytes are one object in storage, its text
    the memories linked to it. Created and deleted only by memory.attachments.services,
    so the object, the row and the chunks (with their quota) come and go together."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="attachments",
        db_index=False,  # (user, created_at) leads with user
    )
    # As the user named it, cleaned: for display and Content-Disposition only;
    # the object key and the type never depend on it.
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=64, help_text="sniffed from the bytes")
    size_bytes = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    object_key = models.CharField(max_length=512)
    tier = models.CharField(max_length=16, choices=Tier.choices)
    tags = ArrayField(models.CharField(max_length=64), default=list, blank=True)
    chunks = models.PositiveIntegerField(help_text="memories made from its text")
    text_chars = models.PositiveIntegerField(help_text="characters of extracted text")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["user", "-created_at"], name="memory_attachment_user")
        ]

    def __str__(self) -> str:
        return f"{self.public_id} ({self.filename})"

    @property
    def public_id(self) -> str:
        return f"{ATTACHMENT_ID_PREFIX}{self.id}"
