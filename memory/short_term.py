"""Short-term context served from Redis, rebuilt from PostgreSQL when Redis lost it.

PostgreSQL is the system of record. Per user, Redis keeps a sorted set of the
active short-term item ids (score: updated_at) and a hash of their summaries,
plus a `ready` marker with a TTL. Writes go through after commit; a read with no
marker (Redis restarted empty, the TTL passed, or a delete happened) rebuilds
from PostgreSQL. Known staleness, bounded by the TTL: a write racing a rebuild,
or two concurrent edits of one item landing in Redis out of order, can show the
older version in the session context (never in query results, which re-read
PostgreSQL through the pre-filter).
"""

from __future__ import annotations

import json
import logging
import uuid
from base64 import b64decode, b64encode
from typing import Any, TypedDict, cast

from django.conf import settings
from django_redis import get_redis_connection
from redis.exceptions import RedisError

from memory import sealing
from memory.constants import Status, Tier
from memory.models import MemoryItem

logger = logging.getLogger(__name__)


class ContextEntry(TypedDict):
    id: str
    content: str
    tags: list[str]
    source: str
    created_at: str
    updated_at: str


def _keys(user_id: uuid.UUID | str) -> tuple[str, str, str]:
    base = f"kb:st:{user_id}"
    return f"{base}:ids", f"{base}:items", f"{base}:ready"


def _entry(item: MemoryItem) -> dict[str, Any]:
    """What Redis keeps of an item: a sealed one's text stays sealed there too."""
    return {
        "id": item.public_id,
        "content": "" if item.sealed is not None else item.content,
        **({"sealed": b64encode(bytes(item.sealed)).decode()} if item.sealed else {}),
        "tags": list(item.tags),
        "source": item.source,
        "created_at": item.created_at.isoformat(),
        "updated_at": item.updated_at.isoformat(),
    }


def _belongs(item: MemoryItem) -> bool:
    return item.tier == Tier.SHORT_TERM and item.status == Status.ACTIVE


def short_term_sync(
    items: list[MemoryItem], removed_ids: list[uuid.UUID] | None = None
) -> None:
    """Write-through after commit: add/refresh active short-term items, drop the rest."""
    try:
        pipe = get_redis_connection("default").pipeline(transaction=False)
        for item in items:
            ids_key, items_key, _ = _keys(item.user_id)
            if _belongs(item):
                pipe.zadd(ids_key, {str(item.id): item.updated_at.timestamp()})
                pipe.hset(items_key, str(item.id), json.dumps(_entry(item)))
            else:
                pipe.zrem(ids_key, str(item.id))
                pipe.hdel(items_key, str(item.id))
        pipe.execute()
    except RedisError:
        # Redis is a cache here: the next read without a marker rebuilds it.
        logger.warning("short-term write-through failed; cache will be rebuilt")
        _invalidate(list({item.user_id for item in items}))


def short_term_forget(user_id: uuid.UUID, item_ids: list[uuid.UUID]) -> None:
    """Drop deleted items from the cache after commit."""
    if not item_ids:
        return
    ids_key, items_key, ready_key = _keys(user_id)
    try:
        pipe = get_redis_connection("default").pipeline(transaction=False)
        pipe.zrem(ids_key, *[str(i) for i in item_ids])
        pipe.hdel(items_key, *[str(i) for i in item_ids])
        # Write-throughs of concurrent transactions can land out of order; for a
        # delete that could resurrect the item in the cache, so the next read
        # rebuilds from PostgreSQL instead of trusting it.
        pipe.delete(ready_key)
        pipe.execute()
    except RedisError:
        logger.warning("short-term forget failed; cache will be rebuilt")
        _invalidate([user_id])


def _invalidate(user_ids: list[Any]) -> None:
    try:
        conn = get_redis_connection("default")
        for uid in user_ids:
            conn.delete(*_keys(uid))
    except RedisError:
        pass  # Redis is down: when it returns empty, the missing marker forces a rebuild


def short_term_invalidate(user_id: uuid.UUID) -> None:
    """Forget the cached context: the next read rebuilds it from PostgreSQL."""
    _invalidate([user_id])


def short_term_rebuild(user_id: uuid.UUID) -> int:
    """Reload the user's active short-term items from PostgreSQL into Redis."""
    items = list(
        MemoryItem.objects.filter(
            user_id=user_id, tier=Tier.SHORT_TERM, status=Status.ACTIVE
        ).order_by("-updated_at")[: settings.SHORT_TERM_CONTEXT_LIMIT * 4]
    )
    ids_key, items_key, ready_key = _keys(user_id)
    pipe = get_redis_connection("default").pipeline(transaction=True)
    pipe.delete(ids_key, items_key)
    if items:
        pipe.zadd(ids_key, {str(i.id): i.updated_at.timestamp() for i in items})
        pipe.hset(items_key, mapping={str(i.id): json.dumps(_entry(i)) for i in items})
    pipe.set(ready_key, "1", ex=settings.SHORT_TERM_CACHE_TTL_SECONDS)
    pipe.execute()
    return len(items)


def short_term_context(
    *, user_id: uuid.UUID, limit: int | None = None
) -> list[ContextEntry]:
    """The user's current short-term context, most recent first, served from Redis.

    Falls back to PostgreSQL (and rebuilds the cache) when Redis has no copy;
    answers from PostgreSQL alone when Redis is unreachable.
    """
    limit = limit or settings.SHORT_TERM_CONTEXT_LIMIT
    ids_key, items_key, ready_key = _keys(user_id)
    try:
        conn = get_redis_connection("default")
        if not conn.exists(ready_key):
            short_term_rebuild(user_id)
        ids = conn.zrevrange(ids_key, 0, limit - 1)
        if not ids:
            return []
        raw = conn.hmget(items_key, ids)
        return [_opened(user_id, json.loads(r)) for r in raw if r is not None]
    except RedisError:
        logger.warning("short-term context served from PostgreSQL: Redis unavailable")
        items = MemoryItem.objects.filter(
            user_id=user_id, tier=Tier.SHORT_TERM, status=Status.ACTIVE
        ).order_by("-updated_at")[:limit]
        return [_opened(user_id, _entry(i)) for i in items]


def _opened(user_id: uuid.UUID, entry: dict[str, Any]) -> ContextEntry:
    blob = entry.pop("sealed", None)
    if blob is not None:
        entry["content"] = sealing.opened(user_id, b64decode(blob))
    return cast(ContextEntry, entry)
