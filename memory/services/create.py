"""Writing new memories, at most once per Idempotency-Key."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from audit.services import audit_record
from kimberly.api.errors import ApplicationError, Conflict, invalid_field
from kimberly.context import Context
from memory import indexing, metrics
from memory.metadata import (
    Metadata,
    MetadataPatch,
    apply_metadata,
    item_size,
    validate_content,
    validate_metadata,
    validate_tier,
)
from memory.models import IdempotencyKey, MemoryItem
from memory.quotas import QuotaExceeded, quota_adjust
from memory.sentiment import sentiment_strength
from memory.services.changes import after_commit_sync
from users import consents
from users.models import User


@dataclass(frozen=True)
class CreateResult:
    item: MemoryItem
    replayed: bool


def _request_hash(tier: str, content: str, metadata: Any) -> str:
    body = json.dumps([tier, content, metadata], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


_CLAIM_KEY_SQL = """
INSERT INTO memory_idempotencykey (user_id, key, request_hash, item_id, created_at)
VALUES (%s, %s, %s, %s, now())
ON CONFLICT (user_id, key) DO NOTHING
RETURNING id
"""


def _claim_idempotency_key(
    user: User, key: str, request_hash: str, item_id: uuid.UUID
) -> MemoryItem | None:
    """Claim the key for this write; a retry of the same write gets its item back.

    A concurrent retry blocks on the unique index until the first commits, then
    sees the claimed key here.
    """
    with connection.cursor() as cur:
        cur.execute(_CLAIM_KEY_SQL, [user.pk, key, request_hash, item_id])
        if cur.fetchone() is not None:
            return None
    claimed = IdempotencyKey.objects.get(user=user, key=key)
    if claimed.request_hash != request_hash:
        raise Conflict(
            "This Idempotency-Key was used for a different request.",
            code="idempotency_key_reused",
            details={"idempotency_key": key},
        )
    item = (
        MemoryItem.objects.filter(pk=claimed.item_id, user=user).first()
        if claimed.item_id
        else None
    )
    if item is None:
        raise Conflict(
            "The memory created under this Idempotency-Key no longer exists.",
            code="idempotency_key_reused",
            details={"idempotency_key": key},
        )
    return item


def new_item(
    *,
    ctx: Context,
    user: User,
    tier: str,
    content: str,
    meta: Metadata,
    created_at: datetime | None = None,
    external_id: str = "",
    item_id: uuid.UUID | None = None,
    attachment_id: uuid.UUID | None = None,
    attachment_offset: int | None = None,
) -> MemoryItem:
    """An unsaved item of valid content and canonical metadata, sized and scored
    for sentiment: the one place a new memory's columns are filled in."""
    if meta["sensitive"]:
        consents.require(user, consents.Purpose.SENSITIVE_MEMORY, "A sensitive memory")
    when = created_at or timezone.now()
    item = MemoryItem(
        id=item_id or uuid.uuid4(),
        user=user,
        tier=tier,
        content=content,
        size_bytes=item_size(content, meta),
        created_at=when,
        updated_at=when,
        created_by=ctx.actor.type,
        consent=True,
        external_id=external_id,
        attachment_id=attachment_id,
        attachment_offset=attachment_offset,
    )
    apply_metadata(item, meta)
    item.sentiment = sentiment_strength(content)
    return item


def memory_create(
    *,
    ctx: Context,
    user: User,
    tier: str,
    content: str,
    metadata: MetadataPatch | None = None,
    idempotency_key: str | None = None,
    created_at: datetime | None = None,
) -> CreateResult:
    """Store a memory (201) or replay an earlier identical write under the same key.

    `created_at` is for imports that carry the original time; default now.
    """
    tier = validate_tier(tier)
    try:
        content = validate_content(content)
        meta = validate_metadata(metadata)
    except ApplicationError:
        metrics.memory_writes.labels(tier=tier, result="invalid").inc()
        raise
    if idempotency_key is not None and not (0 < len(idempotency_key) <= 128):
        raise invalid_field("Idempotency-Key", "must be 1..128 characters")
    size = item_size(content, meta)
    try:
        with transaction.atomic():
            item_id = uuid.uuid4()
            if idempotency_key:
                existing = _claim_idempotency_key(
                    user,
                    idempotency_key,
                    _request_hash(tier, content, metadata),
                    item_id,
                )
                if existing is not None:
                    return CreateResult(existing, replayed=True)
            quota_adjust(user_id=user.pk, tier=tier, delta=size)
            item = new_item(
                ctx=ctx,
                user=user,
                tier=tier,
                content=content,
                meta=meta,
                created_at=created_at,
                item_id=item_id,
            )
            item.save(force_insert=True)
            audit_record(
                ctx=ctx,
                action="memory.create",
                user_id=user.pk,
                target_type="memory",
                target_id=item.public_id,
                details={"tier": tier, "size_bytes": size},
            )
            after_commit_sync([item])
            indexing.enqueue_on_commit([item], user)
    except QuotaExceeded:
        metrics.memory_writes.labels(tier=tier, result="quota_exceeded").inc()
        raise
    metrics.memory_writes.labels(tier=tier, result="ok").inc()
    return CreateResult(item, replayed=False)


def idempotency_keys_purge(*, older_than_hours: int) -> int:
    """Forget idempotency keys past their retention window."""
    cutoff = timezone.now() - timedelta(hours=older_than_hours)
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted
