from django.contrib import admin
from django.http import HttpRequest

from audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin[AuditEvent]):
    """Read-only: the table refuses UPDATE and DELETE anyway."""

    list_display = [
        "created_at",
        "action",
        "actor_type",
        "actor_id",
        "user_id",
        "target_id",
    ]
    list_filter = ["action", "actor_type"]
    search_fields = ["user_id", "target_id", "request_id"]
    ordering = ["-created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
