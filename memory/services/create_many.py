"""Writing many new memories at once (imports): one INSERT, one quota update per
tier and one audit chain lock per batch, instead of one of each per memory."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection, transaction

from audit.services import EventSpec, audit_record_many
from kimberly.api.errors import ApplicationError
from kimberly.context import Context
from memory import indexing, metrics, sealing
from memory.metadata import Metadata, storable, validate_content, validate_tier
from memory.models import MemoryItem
from memory.quotas import quota_adjust, quota_headroom, quota_lock
from memory.services.changes import after_commit_sync
from memory.services.create import new_item
from users import consents
from users.models import User

# Rows per INSERT statement: 26 columns each stays far below PostgreSQL's
# 65,535 bind parameters.
ROWS_PER_STATEMENT = 500
QUOTA_EXCEEDED = "quota_exceeded"


@dataclass(frozen=True)
class NewMemory:
    """A memory to store: valid tier, canonical metadata, its original time."""

    tier: str
    content: str
    metadata: Metadata
    created_at: datetime
    external_id: str = ""
    attachment_id: uuid.UUID | None = None  # a chunk of this document
    attachment_offset: int | None = None  # where the chunk starts in its text


@dataclass
class ManyResult:
    """What became of each input, by its position in the batch."""

    inserted: list[MemoryItem] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)


def memory_create_many(
    *,
    ctx: Context,
    user: User,
    memories: list[NewMemory],
    all_or_nothing: bool,
    audit_details: dict[str, Any] | None = None,
) -> ManyResult:
    """Store new memories in the caller's transaction, skipping duplicates.

    A memory whose (user, external_id) exists already is a duplicate and changes
    nothing. Content over the size limit or not storable, or sensitive without
    the user's consent (`consent_required`), is refused with its reason. Quota: with `all_or_nothing`, a batch that would pass a tier's hard
    limit raises QuotaExceeded (the caller's transaction then stores nothing);
    otherwise the memories that still fit are kept, in order, and each one that
    would pass the limit is refused (`quota_exceeded`).
    """
    assert transaction.get_connection().in_atomic_block, "needs a transaction"
    result = ManyResult()
    candidates: list[tuple[int, MemoryItem]] = []
    # Once per batch (new_item asks again, under the same user lock, for each
    # sensitive one): without consent, sensitive records are refused each.
    may_keep_sensitive = any(m.metadata["sensitive"] for m in memories) and (
        consents.has_consent(user, consents.Purpose.SENSITIVE_MEMORY)
    )
    for pos, memory in enumerate(memories):
        reason = _unstorable(memory.content)
        if not reason and memory.metadata["sensitive"] and not may_keep_sensitive:
            reason = consents.ConsentRequired.code
        if reason:
            result.refused.append((pos, reason))
            continue
        item = new_item(
            ctx=ctx,
            user=user,
            tier=validate_tier(memory.tier),
            content=memory.content,
            meta=memory.metadata,
            created_at=memory.created_at,
            external_id=memory.external_id,
            attachment_id=memory.attachment_id,
            attachment_offset=memory.attachment_offset,
        )
        candidates.append((pos, item))
    # Quota rows first: the INSERT takes unique-index locks on external_id that an
    # overlapping import would wait on while holding the quota row.
    quota_lock(user_id=user.pk, tiers={item.tier for _, item in candidates})
    inserted_ids = _insert_new(item for _, item in candidates)
    kept = [(pos, item) for pos, item in candidates if item.id in inserted_ids]
    result.duplicates = [pos for pos, item in candidates if item.id not in inserted_ids]
    over = _charge_quota(user, kept, all_or_nothing=all_or_nothing)
    if over:
        _delete(over)
        result.refused += [
            (pos, QUOTA_EXCEEDED) for pos, item in kept if item.id in over
        ]
        kept = [(pos, item) for pos, item in kept if item.id not in over]
    result.inserted = [item for _, item in kept]
    result.refused.sort()
    _record(ctx, user, result.inserted, audit_details or {})
    return result


def _unstorable(content: str) -> str:
    try:
        validate_content(content)
    except ApplicationError as exc:
        return exc.code if exc.code != "validation_error" else "empty_content"
    return "" if storable(content) else "unstorable_text"


_COLUMNS = [f for f in MemoryItem._meta.concrete_fields if not f.generated]
# bandit B608 (SQL from strings): {cols} are the model's columns through
# quote_name, {rows} %s placeholders; every value is a parameter.
_INSERT_SQL = "INSERT INTO memory_memoryitem ({cols}) VALUES {rows} " + (
    "ON CONFLICT (user_id, external_id) WHERE external_id <> '' DO NOTHING RETURNING id"
)  # nosec B608


def _insert_new(items: Any) -> set[uuid.UUID]:
    """INSERT the items; returns the ids of those that were not duplicates."""
    rows = []
    for item in items:
        text, item.sealed = sealing.stored(item.user_id, item.content, item.sensitive)
        values = {f.attname: getattr(item, f.attname) for f in _COLUMNS}
        values["content"] = text  # "" when sealed; the item keeps its plaintext
        rows.append(
            [f.get_db_prep_save(values[f.attname], connection) for f in _COLUMNS]
        )
    cols = ", ".join(connection.ops.quote_name(f.column) for f in _COLUMNS)
    one_row = "(" + ", ".join(["%s"] * len(_COLUMNS)) + ")"
    inserted: set[uuid.UUID] = set()
    with connection.cursor() as cur:
        for start in range(0, len(rows), ROWS_PER_STATEMENT):
            chunk = rows[start : start + ROWS_PER_STATEMENT]
            sql = _INSERT_SQL.format(cols=cols, rows=", ".join([one_row] * len(chunk)))
            cur.execute(sql, [value for row in chunk for value in row])
            inserted.update(row[0] for row in cur.fetchall())
    return inserted


def _charge_quota(
    user: User, kept: list[tuple[int, MemoryItem]], *, all_or_nothing: bool
) -> set[uuid.UUID]:
    """Reserve the stored items' bytes; returns the ids that did not fit."""
    by_tier: dict[str, list[MemoryItem]] = defaultdict(list)
    for _, item in kept:
        by_tier[item.tier].append(item)
    over: set[uuid.UUID] = set()
    # Fixed tier order, as in changes.adjust_quotas: no deadlock between two
    # writers locking the same quota rows.
    for tier in sorted(by_tier):
        items = by_tier[tier]
        if all_or_nothing:
            quota_adjust(
                user_id=user.pk, tier=tier, delta=sum(i.size_bytes for i in items)
            )
            continue
        room = quota_headroom(user_id=user.pk, tier=tier)
        fits = 0
        for item in items:
            if item.size_bytes <= room - fits:
                fits += item.size_bytes
            else:
                over.add(item.id)
                metrics.quota_rejections.labels(tier=tier).inc()
        quota_adjust(user_id=user.pk, tier=tier, delta=fits)
    return over


def _delete(ids: set[uuid.UUID]) -> None:
    # Rows this transaction inserted a moment ago and that did not fit the quota.
    MemoryItem.objects.filter(pk__in=ids).delete()


def _record(
    ctx: Context, user: User, items: list[MemoryItem], details: dict[str, Any]
) -> None:
    """One audit event per stored memory (one chain lock), then cache and vectors."""
    if not items:
        return
    audit_record_many(
        ctx=ctx,
        user_id=user.pk,
        events=[
            EventSpec(
                "memory.create",
                "memory",
                item.public_id,
                {"tier": item.tier, "size_bytes": item.size_bytes, **details},
            )
            for item in items
        ],
    )
    after_commit_sync(items)
    indexing.enqueue_on_commit(items, user)
    for tier in {i.tier for i in items}:
        metrics.memory_writes.labels(tier=tier, result="ok").inc(
            sum(1 for i in items if i.tier == tier)
        )
