"""MemoryProposal: a memory Kimberly proposes, stored only when the user accepts it.

Its own module (imported by memory/models.py so Django registers it) to keep
models.py readable.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from memory.constants import ProposalStatus, Source, Tier


class MemoryProposal(models.Model):
    """A memory Kimberly proposes (from a chat exchange); stored only on accept."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    content = models.TextField()
    tier = models.CharField(max_length=16, choices=Tier.choices, default=Tier.LONG_TERM)
    source = models.CharField(
        max_length=16, choices=Source.choices, default=Source.CHAT
    )
    # Where it came from: "msg_<uuid>" of the assistant reply it was proposed after.
    origin = models.CharField(max_length=64, blank=True)
    status = models.CharField(
        max_length=16, choices=ProposalStatus.choices, default=ProposalStatus.PENDING
    )
    memory_id = models.UUIDField(null=True, blank=True)  # the item made on accept
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["user", "status", "-created_at"], name="memory_proposal_user"
            )
        ]

    def __str__(self) -> str:
        return f"{self.public_id} ({self.status})"

    @property
    def public_id(self) -> str:
        return f"prop_{self.id}"
