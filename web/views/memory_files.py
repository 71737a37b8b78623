"""Documents on the memory screen: upload one (the service behind POST
/v1/attachments), list them with their status, and a row that polls itself
while its chunks are still being made searchable by meaning."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.http import require_GET, require_POST

from kimberly.context import context_from_request
from kimberly.middleware import upload_limit
from memory.attachments import extract, selectors, services
from memory.attachments.models import Attachment
from memory.constants import Tier
from users.models import User
from web.forms import AttachmentUploadForm, parse, tag_list
from web.views.base import render, user_view

# The documents panel lists this many of the newest.
LISTED = 20


def attachment_row(a: Attachment, *, user: User) -> dict[str, Any]:
    return {
        "id": a.public_id,
        "filename": a.filename,
        "type": extract.kind_of(a.content_type),
        "size_bytes": a.size_bytes,
        "tier": a.tier,
        "chunks": a.chunks,
        "status": selectors.attachment_status(a, user=user),
        "created_at": a.created_at,
    }


@require_GET
@user_view
def attachment_list(request: HttpRequest, user: User) -> HttpResponse:
    rows = [
        attachment_row(a, user=user)
        for a in selectors.attachment_list(user=user)[:LISTED]
    ]
    return render(request, "web/memory/_attachments.html", {"attachments": rows})


@upload_limit("ATTACHMENT_MAX_BYTES")
@require_POST
@user_view
def attachment_upload(request: HttpRequest, user: User) -> HttpResponse:
    services.attachment_body_check(request.META.get("CONTENT_LENGTH"))
    data = parse(AttachmentUploadForm, request.POST, request.FILES)
    attachment = services.attachment_upload(
        ctx=context_from_request(request),
        user=user,
        files=request.FILES.getlist("file"),
        tier=data["tier"] or Tier.LONG_TERM,  # as POST /v1/attachments
        tags=tag_list(data["tags"]),
    )
    row = attachment_row(
        selectors.attachment_get(user=user, attachment_id=attachment.public_id),
        user=user,
    )
    n = row["chunks"]
    said = f"Document {row['filename']} uploaded: {n} memor{'y' if n == 1 else 'ies'}."
    return render(
        request, "web/memory/_attachment.html", {"a": row, "added": True}, said=said
    )


@require_GET
@user_view
def attachment_status(
    request: HttpRequest, user: User, attachment_id: str
) -> HttpResponse:
    """The row again: what a row that is still indexing polls."""
    a = selectors.attachment_get(user=user, attachment_id=attachment_id)
    row = attachment_row(a, user=user)
    said = f"Document {a.filename} is ready." if row["status"] == "ready" else None
    return render(request, "web/memory/_attachment.html", {"a": row}, said=said)


urlpatterns = [
    path("memory/documents", attachment_list, name="attachments"),
    path("memory/documents/upload", attachment_upload, name="attachment-upload"),
    path(
        "memory/documents/<str:attachment_id>",
        attachment_status,
        name="attachment-status",
    ),
]
