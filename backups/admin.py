from django.contrib import admin
from django.http import HttpRequest

from backups.models import BackupRun


@admin.register(BackupRun)
class BackupRunAdmin(admin.ModelAdmin[BackupRun]):
    """Read-only: runs are written by ./cli backup and the beat tasks."""

    list_display = ["started_at", "kind", "status", "key", "size_bytes", "finished_at"]
    list_filter = ["kind", "status"]
    search_fields = ["key"]
    ordering = ["-started_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
