"""Conversations, their messages, and the exact memory context of every reply."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

CONVERSATION_PREFIX = "conv_"
MESSAGE_PREFIX = "msg_"


class Conversation(models.Model):
    """A user's conversation with Kimberly; its transcript is kept in object storage."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    title = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    message_count = models.PositiveIntegerField(default=0)
    # Messages in the stored transcript object (behind message_count: stale).
    transcript_messages = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [
            models.Index(fields=["user", "-updated_at"], name="chat_conversation_user")
        ]

    def __str__(self) -> str:
        return self.public_id

    @property
    def public_id(self) -> str:
        return f"{CONVERSATION_PREFIX}{self.id}"


class Message(models.Model):
    """One turn: the user's message, or Kimberly's reply with its usage."""

    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField()
    created_at = models.DateTimeField()
    # Assistant replies: who answered and what it cost.
    runner = models.CharField(max_length=16, blank=True)
    model = models.CharField(max_length=128, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    # User messages kept with save_to_memory: the short-term item made.
    memory_id = models.UUIDField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["conversation", "created_at"], name="chat_msg_conv"),
            models.Index(fields=["user", "-created_at"], name="chat_msg_user"),
        ]

    def __str__(self) -> str:
        return self.public_id

    @property
    def public_id(self) -> str:
        return f"{MESSAGE_PREFIX}{self.id}"


class MessageContext(models.Model):
    """A memory that went into a reply: what it was then, its rank, score and why.

    `memory_id` is a plain id, not a foreign key: the provenance of a reply
    stays when the memory is later edited, archived or deleted.
    """

    id = models.BigAutoField(primary_key=True)
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="+")
    memory_id = models.UUIDField()
    rank = models.PositiveSmallIntegerField()
    tier = models.CharField(max_length=16)
    version = models.PositiveIntegerField()
    digest = models.CharField(max_length=64)  # sha256 of its content then
    score = models.FloatField()
    relevance = models.FloatField()
    final = models.FloatField()
    why = models.CharField(max_length=500)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["message", "rank"], name="chat_context_message_rank"
            )
        ]

    def __str__(self) -> str:
        return f"{self.message_id} #{self.rank}"
