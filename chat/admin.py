"""Read-only views of conversations for operators (message text is the user's: not shown)."""

from __future__ import annotations

from django.contrib import admin

from chat.models import Conversation
from kimberly.admin_views import ReadOnlyAdminMixin


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin[Conversation]):
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
