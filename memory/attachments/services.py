"""Writes for attachments: a document in, its object, row and chunk memories
together; and out again, all of it.

Create validates and extracts in memory first (nothing is written for a file we
refuse), then in one transaction writes the row and the chunks (memory_create_many:
one INSERT per 500, one quota reservation for them all, their audit events), and
uploads the object last, so a refused quota or a failed upload leaves nothing. If the commit fails after
the upload, the object is deleted again. Chunks are embedded after commit, like
any memory.
"""

from __future__ import annotations

import hashlib
import logging
import os
import unicodedata
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from audit.services import audit_record
from kimberly import storage
from kimberly.api.errors import (
    ApplicationError,
    NotFound,
    PayloadTooLarge,
    check_upload_size,
    invalid_field,
)
from kimberly.context import Context
from memory import metrics
from memory.attachments import extract as extraction
from memory.attachments.chunking import chunk_offsets, chunk_text
from memory.attachments.models import ATTACHMENT_ID_PREFIX, Attachment
from memory.constants import ID_PREFIX, MAX_BULK_IDS, MAX_TAG_LENGTH, MAX_TAGS, Source
from memory.metadata import storable, string_list, validate_metadata, validate_tier
from memory.models import MemoryItem
from memory.quotas import QuotaExceeded
from memory.services import NewMemory, memory_bulk, memory_create_many
from users.models import User

logger = logging.getLogger(__name__)

SYSTEM_TAGS = 2  # "upload" and the file's name
MAX_FILENAME = 255


def attachment_size_check(size: int) -> None:
    """413 for a file over ATTACHMENT_MAX_BYTES (callers check before reading it)."""
    try:
        check_upload_size(size, settings.ATTACHMENT_MAX_BYTES)
    except PayloadTooLarge:
        metrics.attachments.labels(type="unknown", result=PayloadTooLarge.code).inc()
        raise


# Room for the multipart framing and the small fields around the file: a body
# past ATTACHMENT_MAX_BYTES plus this is refused before it is read.
FORM_OVERHEAD = 64 * 1024


def attachment_body_check(content_length: str | None) -> None:
    """413 before reading a request body that cannot hold a file within the limit."""
    try:
        length = int(content_length or 0)
    except ValueError:
        return  # Django's parser refuses it
    if length > settings.ATTACHMENT_MAX_BYTES + FORM_OVERHEAD:
        attachment_size_check(length - FORM_OVERHEAD)


def attachment_upload(
    *,
    ctx: Context,
    user: User,
    files: list[UploadedFile],
    tier: str,
    tags: list[str],
) -> Attachment:
    """The one file of a form's "file" field, as POST /v1/attachments and the
    memory screen take it: more than one is 400, too large 413 before reading."""
    if len(files) != 1:
        raise invalid_field("file", "send one file per request")
    upload = files[0]
    attachment_size_check(upload.size or 0)
    return attachment_create(
        ctx=ctx,
        user=user,
        data=upload.read(),
        filename=upload.name or "",
        tier=tier,
        tags=tags,
    )


def clean_filename(raw: str) -> str:
    """The user's file name fit for display and Content-Disposition: no folders,
    no control characters, at most 255 characters (keeping the extension)."""
    name = unicodedata.normalize("NFC", raw.replace("\\", "/").rsplit("/", 1)[-1])
    name = "".join(
        c for c in name if unicodedata.category(c) not in {"Cc", "Cf", "Cs"}
    ).strip(" .")
    if len(name) > MAX_FILENAME:
        stem, ext = os.path.splitext(name)
        ext = ext if len(ext) <= 16 else ""
        name = stem[: MAX_FILENAME - len(ext)] + ext
    return name or "upload"


def chunk_tags(filename: str, tags: list[str]) -> list[str]:
    """ "upload", the file's name without extension (when it is a valid tag), and
    the user's tags."""
    user_tags = string_list(tags, "tags", MAX_TAGS - SYSTEM_TAGS)
    stem = os.path.splitext(filename)[0].strip()
    own = [stem] if 0 < len(stem) <= MAX_TAG_LENGTH and storable(stem) else []
    return list(dict.fromkeys(["upload", *own, *user_tags]))


@dataclass(frozen=True)
class _Prepared:
    """A validated upload, ready to be written."""

    attachment: Attachment
    kind: extraction.Kind
    chunks: list[NewMemory]


def _prepare(
    user: User, data: bytes, filename: str, tier: str, tags: list[str]
) -> _Prepared:
    """Everything that can refuse the file, in memory: nothing is written yet."""
    attachment_size_check(len(data))
    name = clean_filename(filename)
    extracted = extraction.extract(data, name)
    meta = validate_metadata({"tags": chunk_tags(name, tags), "source": Source.UPLOAD})
    attachment_id = uuid.uuid4()
    now = timezone.now()
    texts = chunk_text(extracted.text, settings.ATTACHMENT_CHUNK_CHARS)
    attachment = Attachment(
        id=attachment_id,
        user=user,
        filename=name,
        content_type=extracted.kind.content_type,
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        object_key=storage.user_key(
            user.pk, "attachments", f"{attachment_id}{extracted.kind.ext}"
        ),
        tier=tier,
        tags=meta["tags"],
        chunks=len(texts),
        text_chars=len(extracted.text),
        created_at=now,
    )
    chunks = [
        NewMemory(
            tier=tier,
            content=text,
            metadata=meta,
            created_at=now,
            attachment_id=attachment_id,
            attachment_offset=offset,
        )
        for text, offset in zip(
            texts, chunk_offsets(extracted.text, texts), strict=True
        )
    ]
    return _Prepared(attachment, extracted.kind, chunks)


def attachment_create(
    *,
    ctx: Context,
    user: User,
    data: bytes,
    filename: str,
    tier: str,
    tags: list[str] | None = None,
) -> Attachment:
    """Store a document and its text as memories (source upload), or refuse it
    and store nothing: 413 too large, 415 not a supported type, 400 empty or
    unreadable, 429 its chunks would pass the tier's hard limit, 503 storage down.

    Must not run inside another transaction: the object is uploaded just before
    this one commits, and deleted again if the commit fails.
    """
    kind = "unknown"
    try:
        tier = validate_tier(tier, "tier")
        prepared = _prepare(user, data, filename, tier, tags or [])
        kind = prepared.kind.name
        _write(ctx, user, prepared, data)
    except ApplicationError as exc:
        if not isinstance(exc, PayloadTooLarge):  # counted where it was raised
            metrics.attachments.labels(type=kind, result=exc.code).inc()
        if isinstance(exc, QuotaExceeded):
            metrics.memory_writes.labels(tier=tier, result="quota_exceeded").inc()
        raise
    metrics.attachments.labels(type=kind, result="ok").inc()
    return prepared.attachment


def _write(ctx: Context, user: User, prepared: _Prepared, data: bytes) -> None:
    attachment = prepared.attachment
    attempted = False
    try:
        with transaction.atomic(durable=True):
            attachment.save(force_insert=True)
            # One quota reservation for all chunks: the whole document, or none.
            result = memory_create_many(
                ctx=ctx,
                user=user,
                memories=prepared.chunks,
                all_or_nothing=True,
                audit_details={"attachment": attachment.public_id},
            )
            if result.refused:  # cannot happen: extraction leaves storable text
                raise extraction.InvalidDocument(
                    "Some of this document's text cannot be stored.",
                    details={"reason": result.refused[0][1]},
                )
            audit_record(
                ctx=ctx,
                action="attachment.create",
                user_id=user.pk,
                target_type="attachment",
                target_id=attachment.public_id,
                details={
                    "type": prepared.kind.name,
                    "size_bytes": attachment.size_bytes,
                    "tier": attachment.tier,
                    "chunks": attachment.chunks,
                },
            )
            attempted = True
            storage.put_bytes(attachment.object_key, data, prepared.kind.content_type)
    except BaseException as exc:
        # An after-commit callback may raise after the row committed: then the
        # object belongs to it and must stay.
        if attempted and not Attachment.objects.filter(pk=attachment.pk).exists():
            # The commit failed after the upload, or the upload failed but may
            # have landed (its reply lost): the object must not outlive its row.
            # With storage down, do not wait for it a second time here.
            down = isinstance(exc, storage.StorageUnavailable)
            _delete_object(attachment.object_key, now=not down)
        raise


def parse_attachment_id(raw: str) -> uuid.UUID:
    """`att_<uuid>` → UUID; anything else is simply not found."""
    if raw.startswith(ATTACHMENT_ID_PREFIX):
        try:
            return uuid.UUID(raw[len(ATTACHMENT_ID_PREFIX) :])
        except ValueError:
            pass
    raise NotFound(f"No attachment {raw}.")


@transaction.atomic
def attachment_delete(*, ctx: Context, user: User, attachment_id: str) -> None:
    """Delete a document: its chunks through the memory delete path (quota,
    vectors, short-term cache, audit), its row, and after commit its object."""
    pk = parse_attachment_id(attachment_id)
    attachment = Attachment.objects.select_for_update().filter(pk=pk, user=user).first()
    if attachment is None:
        raise NotFound(f"No attachment {attachment_id}.")
    # Locked in key order, as memory_bulk locks them: a chunk the user deletes
    # meanwhile is waited for and then skipped, never reported missing.
    chunk_ids = list(
        MemoryItem.objects.select_for_update()
        .filter(user=user, attachment=attachment)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for start in range(0, len(chunk_ids), MAX_BULK_IDS):
        batch = chunk_ids[start : start + MAX_BULK_IDS]
        memory_bulk(
            ctx=ctx, user=user, action="delete", ids=[f"{ID_PREFIX}{i}" for i in batch]
        )
    audit_record(
        ctx=ctx,
        action="attachment.delete",
        user_id=user.pk,
        target_type="attachment",
        target_id=attachment.public_id,
        details={"size_bytes": attachment.size_bytes, "chunks_deleted": len(chunk_ids)},
    )
    attachment.delete()
    key = attachment.object_key
    transaction.on_commit(lambda: _delete_object(key))
    metrics.attachments.labels(
        type=extraction.kind_of(attachment.content_type), result="deleted"
    ).inc()


def _delete_object(key: str, *, now: bool = True) -> None:
    """Delete the object now, or have a task retry it while storage is down."""
    if now:
        try:
            storage.delete(key)
            return
        except (storage.StorageUnavailable, storage.StorageNotConfigured):
            logger.warning("attachment object not deleted yet; retrying in a task")
    from memory.tasks import delete_attachment_object

    try:
        delete_attachment_object.delay(key)
    except Exception:
        logger.exception("attachment object %s left behind: broker down", key)
