"""Read-only views of conversations for operators (message text is the user's: not shown)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from chat.models import Conversation


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin[Conversation]):
    list_display = ["id", "user", "message_count", "created_at", "updated_at"]
    fields = ["id", "user", "message_count", "transcript_messages", "created_at"]
    readonly_fields = [
        "id",
        "user",
        "message_count",
        "transcript_messages",
        "created_at",
    ]
    search_fields = ["user__email"]
    ordering = ["-updated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
