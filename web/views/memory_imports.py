"""Imports on the memory screen: upload an export (a ChatGPT export, a Kimberly
transcript or a JSON list; the service behind POST /v1/memory/import), follow
its progress in a row that polls itself until the job is done, and the recent
imports (GET /v1/memory/imports and its detail)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.http import require_GET, require_POST

from kimberly.context import context_from_request
from kimberly.middleware import upload_limit
from memory.imports import selectors
from memory.imports.models import MemoryImport
from memory.imports.services import check_size, import_body_check, memory_import_start
from users.models import User
from web.forms import FORMAT_NAMES, ImportForm, parse
from web.views.base import render, user_view
from web.views.memory import quota_context

# The imports panel lists this many of the newest.
LISTED = 10
ACTIVE = {MemoryImport.State.QUEUED, MemoryImport.State.RUNNING}


def _row(imp: MemoryImport) -> dict[str, Any]:
    return {
        "imp": imp,
        "format_name": FORMAT_NAMES.get(imp.format, imp.format),
        "active": imp.status in ACTIVE,
        "skipped": [(why.replace("_", " "), n) for why, n in imp.skipped.items()],
    }


def _row_context(user: User, imp: MemoryImport) -> dict[str, Any]:
    """The row; once the import is done, the quota bars too (out of band)."""
    done = {} if imp.status in ACTIVE else quota_context(user)
    return {"row": _row(imp), **done}


def _finished(imp: MemoryImport) -> str:
    if imp.status == MemoryImport.State.FAILED:
        return f"Import failed: {imp.error or 'nothing more was imported'}."
    return (
        f"Import finished: {imp.imported} imported, {imp.skipped_duplicate} "
        f"already there, {imp.refused} refused."
    )


@require_GET
@user_view
def import_list(request: HttpRequest, user: User) -> HttpResponse:
    rows = [_row(i) for i in selectors.memory_imports_for(user=user)[:LISTED]]
    return render(request, "web/memory/_imports.html", {"rows": rows})


@upload_limit("IMPORT_MAX_BYTES")
@require_POST
@user_view
def import_upload(request: HttpRequest, user: User) -> HttpResponse:
    import_body_check(request.META.get("CONTENT_LENGTH"))
    data = parse(ImportForm, request.POST, request.FILES)
    check_size(data["file"].size)
    imp = memory_import_start(
        ctx=context_from_request(request),
        user=user,
        tier=data["tier"],
        fmt=data["format"] or None,
        raw=data["file"].read(),
    )
    said = (
        f"Import of {imp.total} record{'' if imp.total == 1 else 's'} queued."
        if imp.status in ACTIVE
        else _finished(imp)
    )
    return render(
        request, "web/memory/_import.html", _row_context(user, imp), said=said
    )


@require_GET
@user_view
def import_status(request: HttpRequest, user: User, import_id: str) -> HttpResponse:
    """The row again: what a row polls while its job is queued or running; the
    end is announced once (the finished row no longer polls)."""
    imp = selectors.memory_import_get(user=user, import_id=import_id)
    said = None if imp.status in ACTIVE else _finished(imp)
    return render(
        request, "web/memory/_import.html", _row_context(user, imp), said=said
    )


urlpatterns = [
    path("memory/imports", import_list, name="memory-imports"),
    path("memory/imports/upload", import_upload, name="memory-import-upload"),
    path("memory/imports/<str:import_id>", import_status, name="memory-import"),
]
