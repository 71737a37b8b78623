"""The embedding queue: new and changed memories are queued in Redis after commit and drained by one task at a time, in model-sized batches."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django_redis import get_redis_connection
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import RedisError

from memory import embeddings
from memory.indexing.vectors import memory_embed_items
from memory.models import MemoryItem
from users.models import User

logger = logging.getLogger(__name__)


PENDING_KEY = "kb:embed:pending"


SCHEDULED_KEY = "kb:embed:scheduled"


FLAG_SECONDS = 960  # > embed_pending's 900 s time limit


RETRY_BACKOFF_MAX = 300  # embed_pending's longest wait between retries


LINGER_POLL_SECONDS = 0.02


def embedding_wanted(user: User) -> bool:
    return embeddings.enabled() and user.embedding_enabled


def enqueue_embedding(item_ids: Iterable[uuid.UUID]) -> None:
    """Queue items for embedding and make sure one drain task is on its way."""
    ids = [str(i) for i in item_ids]
    if not ids:
        return
    try:
        conn = get_redis_connection("default")
        conn.sadd(PENDING_KEY, *ids)
        _schedule_drain(conn)
    except (RedisError, KombuOperationalError):
        # Runs after commit: the write is already acknowledged and must stay so.
        logger.warning("embed queue unavailable; the sweep will pick these up")


def _schedule_drain(conn: Any) -> None:
    from memory.tasks import embed_pending

    # The flag outlives the task's hard time limit, so at most one drain runs.
    if conn.set(SCHEDULED_KEY, "1", nx=True, ex=FLAG_SECONDS):
        try:
            embed_pending.delay()
        except Exception:
            conn.delete(SCHEDULED_KEY)  # else embedding would stall until it expires
            raise


def enqueue_on_commit(items: list[MemoryItem], user: User) -> None:
    if embedding_wanted(user):
        ids = [i.id for i in items]
        transaction.on_commit(lambda: enqueue_embedding(ids))


def drain_pending(
    batch_size: int = 64, max_batches: int = 50, linger: float = 0.0
) -> int:
    """Embed what is queued, in batches; returns how many were embedded.

    Stops after `max_batches` and hands over to a fresh task, so one task never
    runs into its time limit under sustained writes. While the model fails, the
    task keeps the drain flag through its retries: otherwise every write would
    start one more failing task (a retry storm).
    """
    conn = get_redis_connection("default")
    done = 0
    keep_flag = False
    try:
        for n in range(max_batches):
            # The first batch goes at once (one write at light load is searchable
            # in well under a second); later ones exist only under a stream of
            # writes, and waiting `linger` for a full batch costs less than a
            # model call and four statements per couple of memories.
            ids = _claim(conn, batch_size, linger if n else 0.0)
            if not ids:
                break
            try:
                done += memory_embed_items(ids)
            except BaseException as exc:
                conn.sadd(PENDING_KEY, *[str(i) for i in ids])  # nothing is dropped
                if isinstance(exc, embeddings.EmbeddingUnavailable):
                    keep_flag = True
                    conn.expire(SCHEDULED_KEY, FLAG_SECONDS + RETRY_BACKOFF_MAX)
                raise
    finally:
        if not keep_flag:
            conn.delete(SCHEDULED_KEY)
    # A write that queued itself after our last SPOP but before the flag was
    # cleared would otherwise wait for the sweep.
    if conn.scard(PENDING_KEY):
        _schedule_drain(conn)
    return done


def drain_released() -> None:
    """The drain task gave up (retries exhausted): the next write may start one."""
    try:
        get_redis_connection("default").delete(SCHEDULED_KEY)
    except RedisError:
        logger.warning("could not release the embed drain flag; it expires")


def _claim(conn: Any, batch_size: int, linger: float) -> list[uuid.UUID]:
    """Up to `batch_size` queued ids; a short batch waits up to `linger` seconds
    for more (only once something was found: an empty queue returns at once)."""
    raw = list(conn.spop(PENDING_KEY, batch_size) or [])
    deadline = time.monotonic() + linger
    while raw and len(raw) < batch_size and time.monotonic() < deadline:
        time.sleep(min(LINGER_POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        raw += conn.spop(PENDING_KEY, batch_size - len(raw)) or []
    return [uuid.UUID(r.decode() if isinstance(r, bytes) else r) for r in raw]
