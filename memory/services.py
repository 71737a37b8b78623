"""Writes for memories: create, edit, lifecycle, delete, bulk. Validate, then act.

Each write is one transaction that moves quota usage, the item, its version row
and its audit event together; the Redis short-term cache and metrics follow
after commit.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from audit.services import audit_record
from kimberly.api.errors import ApplicationError, Conflict, NotFound, invalid_field
from kimberly.context import Context
from memory import embeddings, indexing, metrics, short_term
from memory.constants import (
    FEEDBACK_VALUES,
    MAX_BULK_IDS,
    MAX_CHANNELS,
    MAX_CONTENT_BYTES,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    Scope,
    Source,
    Status,
    Tier,
)
from memory.meditation import sentiment_strength
from memory.models import Goal, IdempotencyKey, MemoryItem, MemoryVersion
from memory.quotas import QuotaExceeded, quota_adjust
from memory.selectors import parse_memory_id
from users.models import User


class ContentTooLarge(ApplicationError):
    code = "content_too_large"
    status = 413


# --------------------------------------------------------------------- inputs

METADATA_KEYS = {"tags", "source", "channels", "sensitive", "scope", "user_feedback"}


def validate_tier(tier: Any, field: str = "type") -> str:
    if tier not in Tier.values:
        raise invalid_field(field, f"must be one of {', '.join(Tier.values)}")
    return str(tier)


def validate_content(content: Any) -> str:
    if not isinstance(content, str) or not content.strip():
        raise invalid_field("content", "must be a non-empty string")
    size = len(content.encode("utf-8"))
    if size > MAX_CONTENT_BYTES:
        raise ContentTooLarge(
            f"content is {size} bytes; the limit is {MAX_CONTENT_BYTES}.",
            details={"size_bytes": size, "max_bytes": MAX_CONTENT_BYTES},
        )
    return content


def _string_list(raw: Any, field: str, max_items: int) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw):
        raise invalid_field(field, "must be a list of strings")
    out: list[str] = []
    for value in (t.strip() for t in raw):
        if not value or len(value) > MAX_TAG_LENGTH:
            raise invalid_field(
                field, f"each entry must be 1..{MAX_TAG_LENGTH} characters"
            )
        if not _storable(value):
            raise invalid_field(
                field,
                "contains characters that cannot be stored (NUL or lone surrogate)",
            )
        if value not in out:
            out.append(value)
    if len(out) > max_items:
        raise invalid_field(field, f"at most {max_items} entries")
    return out


def _storable(text: str) -> bool:
    """PostgreSQL text cannot hold NUL, and UTF-8 cannot hold lone surrogates."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def validate_metadata(
    raw: Any, *, base: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Full canonical metadata: `raw` keys validated and laid over `base` (or defaults)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise invalid_field("metadata", "must be an object")
    unknown = sorted(set(raw) - METADATA_KEYS - {"version"})
    if unknown:
        raise invalid_field("metadata", f"unknown keys: {', '.join(unknown)}")
    meta = dict(
        base
        or {
            "tags": [],
            "source": Source.API.value,
            "channels": [],
            "sensitive": False,
            "scope": Scope.PRIVATE.value,
            "user_feedback": None,
        }
    )
    if "tags" in raw:
        meta["tags"] = _string_list(raw["tags"], "metadata.tags", MAX_TAGS)
    if "channels" in raw:
        meta["channels"] = _string_list(
            raw["channels"], "metadata.channels", MAX_CHANNELS
        )
    for key, choices in (("source", Source.values), ("scope", Scope.values)):
        if key in raw:
            if raw[key] not in choices:
                raise invalid_field(
                    f"metadata.{key}", f"must be one of {', '.join(choices)}"
                )
            meta[key] = raw[key]
    if "sensitive" in raw:
        if not isinstance(raw["sensitive"], bool):
            raise invalid_field("metadata.sensitive", "must be true or false")
        meta["sensitive"] = raw["sensitive"]
    if "user_feedback" in raw:
        fb = raw["user_feedback"]
        if fb is not None and fb not in FEEDBACK_VALUES:
            raise invalid_field(
                "metadata.user_feedback",
                "must be thumbs_up, thumbs_down or rating:1..5",
            )
        meta["user_feedback"] = fb
    return meta


def metadata_of(item: MemoryItem) -> dict[str, Any]:
    """The item's user-facing metadata (without the system-managed version)."""
    return {
        "tags": list(item.tags),
        "source": item.source,
        "channels": list(item.channels),
        "sensitive": item.sensitive,
        "scope": item.scope,
        "user_feedback": item.user_feedback or None,
    }


def _apply_metadata(item: MemoryItem, meta: dict[str, Any]) -> None:
    item.tags = meta["tags"]
    item.source = meta["source"]
    item.channels = meta["channels"]
    item.sensitive = meta["sensitive"]
    item.scope = meta["scope"]
    item.user_feedback = meta["user_feedback"] or ""


def item_size(content: str, metadata: dict[str, Any]) -> int:
    """Quota size: UTF-8 bytes of content + bytes of the canonical metadata JSON."""
    meta_json = json.dumps(
        metadata, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return len(content.encode("utf-8")) + len(meta_json.encode("utf-8"))


# ------------------------------------------------------------------- helpers


def _version_row(item: MemoryItem, action: str, ctx: Context) -> MemoryVersion:
    """Snapshot the item as it is *before* `action` changes it (call before mutating)."""
    return MemoryVersion(
        item=item,
        version=item.version,
        action=action,
        actor_type=ctx.actor.type,
        actor_id=ctx.actor.id[:64],
        changed_at=timezone.now(),
        tier=item.tier,
        status=item.status,
        protected=item.protected,
        content=item.content,
        metadata={**metadata_of(item), "version": item.version},
    )


def _after_commit_sync(
    items: list[MemoryItem], *, was_short_term: bool = False
) -> None:
    # Items in the short-term tier, and those that just left it, reach the cache.
    touched = [i for i in items if was_short_term or i.tier == Tier.SHORT_TERM]
    if touched:
        transaction.on_commit(lambda: short_term.short_term_sync(touched))


def _record_change(
    ctx: Context,
    user: User,
    item: MemoryItem,
    previous: MemoryVersion,
    action: str,
    details: dict[str, Any],
) -> None:
    """Save the changed item, its previous state and the audit event, together."""
    item.save()
    previous.save(force_insert=True)
    audit_record(
        ctx=ctx,
        action=f"memory.{action}",
        user_id=user.pk,
        target_type="memory",
        target_id=item.public_id,
        details=details,
    )


def _locked_item(user: User, memory_id: str) -> MemoryItem:
    pk = parse_memory_id(memory_id)
    try:
        return MemoryItem.objects.select_for_update().get(pk=pk, user=user)
    except MemoryItem.DoesNotExist:
        raise NotFound(f"No memory {memory_id}.") from None


def _adjust_quotas(user_id: uuid.UUID, deltas: dict[str, int]) -> None:
    # Fixed tier order: two transactions moving bytes between the same tiers in
    # opposite directions would otherwise deadlock on the quota rows. Releases
    # before reservations within a tier are folded into one delta.
    for tier in sorted(deltas):
        if deltas[tier]:
            quota_adjust(user_id=user_id, tier=tier, delta=deltas[tier])


# -------------------------------------------------------------------- create


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


def memory_create(
    *,
    ctx: Context,
    user: User,
    tier: Any,
    content: Any,
    metadata: Any = None,
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
            now = created_at or timezone.now()
            item = MemoryItem(
                id=item_id,
                user=user,
                tier=tier,
                content=content,
                size_bytes=size,
                created_at=now,
                updated_at=now,
                created_by=ctx.actor.type,
                consent=True,
            )
            _apply_metadata(item, meta)
            item.sentiment = sentiment_strength(content)
            item.save(force_insert=True)
            audit_record(
                ctx=ctx,
                action="memory.create",
                user_id=user.pk,
                target_type="memory",
                target_id=item.public_id,
                details={"tier": tier, "size_bytes": size},
            )
            _after_commit_sync([item])
            indexing.enqueue_on_commit([item], user)
    except QuotaExceeded:
        metrics.memory_writes.labels(tier=tier, result="quota_exceeded").inc()
        raise
    metrics.memory_writes.labels(tier=tier, result="ok").inc()
    return CreateResult(item, replayed=False)


# ---------------------------------------------------------------------- edit


@transaction.atomic
def memory_update(
    *,
    ctx: Context,
    user: User,
    memory_id: str,
    content: Any = None,
    metadata: Any = None,
    tier: Any = None,
    action: str = "update",
) -> MemoryItem:
    """Edit content, metadata and/or tier; quota-checked, versioned, audited."""
    new_tier = validate_tier(tier) if tier is not None else None
    new_content = validate_content(content) if content is not None else None
    item = _locked_item(user, memory_id)
    old_meta = metadata_of(item)
    new_meta = (
        validate_metadata(metadata, base=old_meta) if metadata is not None else old_meta
    )
    changed = []
    if new_content is not None and new_content != item.content:
        changed.append("content")
    if new_meta != old_meta:
        changed.append("metadata")
    if new_tier is not None and new_tier != item.tier:
        changed.append("tier")
    if not changed:
        return item
    previous = _version_row(item, action, ctx)
    old_tier, old_size = item.tier, item.size_bytes
    target_tier = new_tier or old_tier
    new_size = item_size(
        new_content if new_content is not None else item.content, new_meta
    )
    if item.status == Status.ACTIVE:
        deltas: dict[str, int] = defaultdict(int)
        deltas[old_tier] -= old_size
        deltas[target_tier] += new_size
        try:
            _adjust_quotas(user.pk, deltas)
        except QuotaExceeded:
            metrics.memory_writes.labels(
                tier=target_tier, result="quota_exceeded"
            ).inc()
            raise
    if new_content is not None:
        item.content = new_content
        item.sentiment = sentiment_strength(new_content)
    if "content" in changed:
        indexing.memory_drop_vectors(items=[item])
    _apply_metadata(item, new_meta)
    item.tier = target_tier
    item.size_bytes = new_size
    item.version += 1
    item.updated_at = timezone.now()
    _record_change(
        ctx,
        user,
        item,
        previous,
        action,
        {
            "changed": changed,
            "tier": [old_tier, target_tier],
            "size_bytes": [old_size, new_size],
            "version": item.version,
        },
    )
    _after_commit_sync([item], was_short_term=old_tier == Tier.SHORT_TERM)
    if "content" in changed:
        indexing.enqueue_on_commit([item], user)
    metrics.memory_writes.labels(tier=target_tier, result="ok").inc()
    return item


@transaction.atomic
def memory_revert(
    *, ctx: Context, user: User, memory_id: str, version: Any
) -> MemoryItem:
    """Bring back the content, metadata and tier an item had at `version`.

    A revert is itself an edit: quota-checked, kept in history (so it can be
    reverted too) and audited as memory.revert. Status and protection stay.
    """
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise invalid_field("version", "must be a positive integer")
    item = _locked_item(user, memory_id)
    snapshot = item.versions.filter(version=version).first()
    if snapshot is None:
        raise NotFound(
            f"{memory_id} has no earlier version {version}.",
            details={"version": version, "current": item.version},
        )
    return memory_update(
        ctx=ctx,
        user=user,
        memory_id=memory_id,
        content=snapshot.content,
        metadata={k: v for k, v in snapshot.metadata.items() if k in METADATA_KEYS},
        tier=snapshot.tier,
        action="revert",
    )


# ----------------------------------------------------------------- lifecycle

LIFECYCLE_ACTIONS = ("protect", "unprotect", "archive", "restore")


def _transition(item: MemoryItem, action: str, deltas: dict[str, int]) -> bool:
    """Apply a lifecycle action in memory; record quota moves; False if a no-op."""
    if action == "protect":
        if item.protected:
            return False
        item.protected = True
    elif action == "unprotect":
        if not item.protected:
            return False
        item.protected = False
    elif action == "archive":
        if item.status == Status.ARCHIVED:
            return False
        item.status, item.archived_at = Status.ARCHIVED, timezone.now()
        deltas[item.tier] -= item.size_bytes
    elif action == "restore":
        if item.status == Status.ACTIVE:
            return False
        item.status, item.archived_at = Status.ACTIVE, None
        deltas[item.tier] += item.size_bytes
    else:  # pragma: no cover - callers validate the action
        raise ValueError(action)
    item.version += 1
    item.updated_at = timezone.now()
    return True


@transaction.atomic
def memory_lifecycle(
    *, ctx: Context, user: User, memory_id: str, action: str
) -> MemoryItem:
    """protect | unprotect | archive | restore one item; repeating one is a no-op."""
    item = _locked_item(user, memory_id)
    previous = _version_row(item, action, ctx)
    deltas: dict[str, int] = defaultdict(int)
    if not _transition(item, action, deltas):
        return item
    _adjust_quotas(user.pk, deltas)
    _record_change(
        ctx, user, item, previous, action, {"tier": item.tier, "version": item.version}
    )
    _after_commit_sync([item])
    return item


@transaction.atomic
def memory_delete(*, ctx: Context, user: User, memory_id: str) -> None:
    """Delete an item and its history; its bytes leave the quota; an audit tombstone stays."""
    item = _locked_item(user, memory_id)
    _delete_locked(ctx, user, [item])
    audit_record(
        ctx=ctx,
        action="memory.delete",
        user_id=user.pk,
        target_type="memory",
        target_id=item.public_id,
        details={"tier": item.tier, "size_bytes": item.size_bytes},
    )


def _delete_locked(ctx: Context, user: User, items: list[MemoryItem]) -> None:
    deltas: dict[str, int] = defaultdict(int)
    for item in items:
        if item.status == Status.ACTIVE:
            deltas[item.tier] -= item.size_bytes
    _adjust_quotas(user.pk, deltas)
    ids = [i.id for i in items]
    MemoryItem.objects.filter(pk__in=ids, user=user).delete()
    transaction.on_commit(lambda: short_term.short_term_forget(user.pk, ids))


# ---------------------------------------------------------------------- bulk

BULK_ACTIONS = ("archive", "restore", "protect", "unprotect", "delete", "export")


@dataclass(frozen=True)
class BulkResult:
    action: str
    changed: int
    items: list[MemoryItem]


@transaction.atomic
def memory_bulk(*, ctx: Context, user: User, action: Any, ids: Any) -> BulkResult:
    """Apply one action to up to 500 of the user's items: all of them, or none (4xx)."""
    if action not in BULK_ACTIONS:
        raise invalid_field("action", f"must be one of {', '.join(BULK_ACTIONS)}")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise invalid_field("ids", "must be a non-empty list of memory ids")
    if len(ids) > MAX_BULK_IDS:
        raise invalid_field("ids", f"at most {MAX_BULK_IDS} ids")
    wanted: dict[uuid.UUID, str] = {}
    missing: list[str] = []
    for raw in ids:
        try:
            wanted[parse_memory_id(raw)] = raw
        except NotFound:
            missing.append(raw)
    # Lock in primary-key order so concurrent bulk requests cannot deadlock.
    items = list(
        MemoryItem.objects.select_for_update()
        .filter(user=user, pk__in=list(wanted))
        .order_by("pk")
    )
    found = {i.pk for i in items}
    missing += [raw for pk, raw in wanted.items() if pk not in found]
    if missing:
        raise NotFound(
            f"{len(missing)} of the ids are not memories of yours; nothing was changed.",
            details={"missing": missing[:50]},
        )
    changed: list[MemoryItem] = []
    if action == "delete":
        _delete_locked(ctx, user, items)
        changed = items
    elif action in LIFECYCLE_ACTIONS:
        deltas: dict[str, int] = defaultdict(int)
        previous = {i.pk: _version_row(i, action, ctx) for i in items}
        changed = [i for i in items if _transition(i, action, deltas)]
        _adjust_quotas(user.pk, deltas)
        MemoryItem.objects.bulk_update(
            changed, ["protected", "status", "archived_at", "version", "updated_at"]
        )
        MemoryVersion.objects.bulk_create([previous[i.pk] for i in changed])
        _after_commit_sync(changed)
    audit_record(
        ctx=ctx,
        action="memory.bulk",
        user_id=user.pk,
        target_type="memory",
        target_id="",
        details={
            "action": action,
            "requested": len(items),
            "changed": len(changed),
            "ids": [i.public_id for i in items],
        },
    )
    return BulkResult(action=action, changed=len(changed), items=items)


# ---------------------------------------------------------------- housekeeping


def idempotency_keys_purge(*, older_than_hours: int) -> int:
    """Forget idempotency keys past their retention window."""
    cutoff = timezone.now() - timedelta(hours=older_than_hours)
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted


# ----------------------------------------------------------------------- goals

MAX_GOALS = 50


@transaction.atomic
def goal_create(*, ctx: Context, user: User, text: Any, tags: Any = None) -> Goal:
    """Add an active goal or project (embedded now when embeddings are on)."""
    if not isinstance(text, str) or not text.strip() or len(text) > 1000:
        raise invalid_field("text", "must be 1..1000 characters")
    if not _storable(text):
        raise invalid_field("text", "contains characters that cannot be stored")
    clean_tags = _string_list(tags if tags is not None else [], "tags", MAX_TAGS)
    if Goal.objects.filter(user=user).count() >= MAX_GOALS:
        raise invalid_field("goals", f"at most {MAX_GOALS} goals")
    goal = Goal(user=user, text=text.strip(), tags=clean_tags)
    if indexing.embedding_wanted(user):
        try:
            goal.vector = embeddings.embed_texts([goal.text])[0]
            goal.model = embeddings.model_tag()
            goal.content_hash = embeddings.content_hash(goal.text)
        except embeddings.EmbeddingUnavailable:
            goal.vector = None  # tags count meanwhile; the sweep embeds it later
    goal.save()
    audit_record(
        ctx=ctx,
        action="goal.create",
        user_id=user.pk,
        target_type="goal",
        target_id=str(goal.pk),
    )
    return goal


@transaction.atomic
def goal_delete(*, ctx: Context, user: User, goal_id: int) -> None:
    deleted, _ = Goal.objects.filter(pk=goal_id, user=user).delete()
    if not deleted:
        raise NotFound(f"No goal {goal_id}.")
    audit_record(
        ctx=ctx,
        action="goal.delete",
        user_id=user.pk,
        target_type="goal",
        target_id=str(goal_id),
    )
