from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from kimberly.admin_views import ReadOnlyAdminMixin
from kimberly.context import Actor, Context
from memory.models import (
    Attachment,
    MeditationRun,
    MemoryImport,
    MemoryItem,
    MemoryProposal,
    MemoryVersion,
    Quota,
)
from memory.quotas import quota_set


class VersionInline(admin.TabularInline[MemoryVersion, MemoryItem]):
    model = MemoryVersion
    extra = 0
    can_delete = False
    fields = (
        "version",
        "action",
        "actor_type",
        "actor_id",
        "changed_at",
        "tier",
        "status",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(MemoryItem)
class MemoryItemAdmin(admin.ModelAdmin[MemoryItem]):
    """Read-mostly: edits go through the API so quotas, history and audit stay right."""

    list_display = [
        "id",
        "user",
        "tier",
        "status",
        "protected",
        "size_bytes",
        "score",
        "created_at",
    ]
    list_filter = ["tier", "status", "protected", "source", "sensitive"]
    search_fields = ["id", "user__email"]
    list_select_related = ["user"]
    ordering = ["-created_at"]
    inlines = [VersionInline]
    show_full_result_count = False

    def get_readonly_fields(
        self, request: HttpRequest, obj: object = None
    ) -> list[str]:
        """Metadata for everyone with access; the text only for superusers, and
        never of a sensitive memory."""
        # search_vector is the content's words: content too; `sealed` is its
        # ciphertext, of no use to anyone here.
        names = [
            f.name
            for f in MemoryItem._meta.fields
            if f.name not in ("content", "sealed", "search_vector")
        ]
        superuser = getattr(request.user, "is_superuser", False)
        return [*names, "shown_content"] if superuser else names

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.get_readonly_fields(request, obj)

    @admin.display(description="content")
    def shown_content(self, obj: MemoryItem) -> str:
        return "(sensitive: never shown here)" if obj.sensitive else obj.content

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Quota)
class QuotaAdmin(admin.ModelAdmin[Quota]):
    """Usage is read-only (only writes move it); the override is editable."""

    list_display = ["user", "tier", "used_bytes", "limit_bytes"]
    list_filter = ["tier"]
    search_fields = ["user__email"]
    readonly_fields = ["user", "tier", "used_bytes"]
    list_select_related = ["user"]

    def save_model(
        self, request: HttpRequest, obj: Quota, form: Any, change: bool
    ) -> None:
        # Through the service, so an override made here is validated and audited.
        quota_set(
            ctx=Context(Actor("admin", str(request.user.pk))),
            user_id=obj.user_id,
            tier=obj.tier,
            limit_bytes=obj.limit_bytes,
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # the row holds the usage that keeps quotas exact


@admin.register(MemoryProposal)
class MemoryProposalAdmin(ReadOnlyAdminMixin, admin.ModelAdmin[MemoryProposal]):
    list_display = ["id", "user", "status", "tier", "origin", "created_at"]
    list_filter = ["status"]
    readonly_fields = [
        "id",
        "user",
        "content",
        "tier",
        "source",
        "origin",
        "status",
        "memory_id",
        "created_at",
        "decided_at",
    ]


@admin.register(MeditationRun)
class MeditationRunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin[MeditationRun]):
    """Read-only: runs are made by the scheduler, the API and ./cli meditate."""

    list_display = [
        "id",
        "scope",
        "user",
        "status",
        "dry_run",
        "started_at",
        "duration_ms",
        "processed",
        "promoted",
        "expired",
        "archived",
        "purged",
    ]
    list_filter = ["scope", "status", "dry_run"]
    search_fields = ["=id", "user__email"]
    list_select_related = ["user"]
    raw_id_fields = ["user", "parent"]


@admin.register(MemoryImport)
class MemoryImportAdmin(ReadOnlyAdminMixin, admin.ModelAdmin[MemoryImport]):
    """Read-only: imports are started through the API and run by their job."""

    list_display = [
        "id",
        "user",
        "format",
        "status",
        "created_at",
        "total",
        "processed",
        "imported",
        "skipped_duplicate",
        "refused",
    ]
    list_filter = ["format", "status"]
    search_fields = ["=id", "user__email"]
    list_select_related = ["user"]
    raw_id_fields = ["user"]


@admin.register(Attachment)
class AttachmentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin[Attachment]):
    """Read-only, and no delete: DELETE /v1/attachments/{id} removes the chunks
    (with their quota), the row and the object together."""

    list_display = ["id", "user", "filename", "content_type", "size_bytes", "chunks"]
    list_filter = ["content_type", "tier"]
    search_fields = ["=id", "user__email"]
    list_select_related = ["user"]
    raw_id_fields = ["user"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
