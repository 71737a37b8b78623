"""Reads of attachments, always scoped by the acting user."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, QuerySet

from kimberly.api.errors import NotFound
from memory.attachments.models import Attachment
from memory.attachments.services import parse_attachment_id
from memory.constants import Status
from memory.indexing import embedding_wanted
from memory.models import MemoryItem
from users.models import User

# An attachment's status: whether all of its chunks are searchable by meaning yet.
STATUSES = ("indexing", "ready")


def _with_pending(qs: QuerySet[Attachment]) -> QuerySet[Attachment]:
    # `pending`: some active chunk still waits for its vector (the partial
    # index memory_attachment_chunks finds an attachment's chunks).
    waiting = MemoryItem.objects.filter(
        attachment=OuterRef("pk"), embedding_ref="", status=Status.ACTIVE
    )
    return qs.annotate(pending=Exists(waiting))


def attachment_list(*, user: User) -> QuerySet[Attachment]:
    """The user's attachments, newest first."""
    return _with_pending(Attachment.objects.filter(user=user)).order_by(
        "-created_at", "-id"
    )


def attachment_get(*, user: User, attachment_id: str) -> Attachment:
    """One of the user's attachments; another user's id is 404 like a missing one."""
    pk = parse_attachment_id(attachment_id)
    found = _with_pending(Attachment.objects.filter(pk=pk, user=user)).first()
    if found is None:
        raise NotFound(f"No attachment {attachment_id}.")
    return found


def attachment_status(attachment: Attachment, *, user: User) -> str:
    """ "indexing" while some active chunk waits for its vector (and vectors are
    made for this user), else "ready"."""
    pending = getattr(attachment, "pending", attachment.chunks > 0)
    return "indexing" if pending and embedding_wanted(user) else "ready"
