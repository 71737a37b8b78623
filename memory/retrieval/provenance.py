"""Read provenance: which queries returned which memories, logged to Redis, written in batches, pruned after a window."""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import UTC, datetime

from django.db import connection, transaction
from django_redis import get_redis_connection
from redis.exceptions import RedisError

from memory.models import MemoryItem, RetrievalRecord

logger = logging.getLogger(__name__)


LOG_KEY = "kb:retrieval:log"


def log_retrieval(
    user_id: uuid.UUID,
    request_id: str,
    hits: list[tuple[uuid.UUID, float]],
    *,
    kind: str = "query",
    counted: bool = True,
) -> None:
    """Queue provenance of one read: (item id, final score) best first, by `kind`
    (query, chat, agent) and `request_id` (the request, message or task). An
    uncounted read (a preview's) is on record but is not a use of the memory:
    it leaves access_count and last_seen_at, which meditation scores, alone."""
    entry = json.dumps(
        {
            "u": str(user_id),
            "r": request_id[:64],
            "k": kind,
            "c": int(counted),
            "t": time.time(),
            "h": [
                [str(item_id), rank, round(final, 6)]
                for rank, (item_id, final) in enumerate(hits, 1)
            ],
        }
    )
    try:
        get_redis_connection("default").rpush(LOG_KEY, entry)
    except RedisError:
        logger.warning(
            "retrieval log unavailable; access counts for this query are lost"
        )


def flush_retrieval_log(max_entries: int = 20000) -> int:
    """Write queued retrievals: provenance rows, last_seen_at and access_count."""
    conn = get_redis_connection("default")
    raw = conn.lpop(LOG_KEY, max_entries) or []
    if not raw:
        return 0
    records: list[RetrievalRecord] = []
    seen: dict[uuid.UUID, tuple[int, float]] = {}
    for line in raw:
        entry = json.loads(line)
        at = datetime.fromtimestamp(entry["t"], tz=UTC)
        for item_id, rank, final in entry["h"]:
            iid = uuid.UUID(item_id)
            records.append(
                RetrievalRecord(
                    user_id=entry["u"],
                    item_id=iid,
                    request_id=entry["r"],
                    kind=entry.get("k", "query"),
                    rank=rank,
                    final=final,
                    created_at=at,
                )
            )
            if entry.get("c", 1):
                count, last = seen.get(iid, (0, 0.0))
                seen[iid] = (count + 1, max(last, entry["t"]))
    try:
        _write_retrievals(records, seen)
    except Exception:
        conn.lpush(LOG_KEY, *reversed(raw))  # back at the head, for the next flush
        raise
    return len(raw)


def _write_retrievals(
    records: list[RetrievalRecord], seen: dict[uuid.UUID, tuple[int, float]]
) -> None:
    ids = sorted(seen)
    recorded = sorted({r.item_id for r in records} | set(seen))
    with transaction.atomic():
        # Lock in id order, like every other multi-row writer of items, so this
        # batch update cannot deadlock with a user's bulk action.
        live = set(
            MemoryItem.objects.select_for_update()
            .filter(pk__in=recorded)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        # An item deleted since its query took its records with it; the foreign
        # key would refuse new ones, and the whole batch with them.
        RetrievalRecord.objects.bulk_create(
            [r for r in records if r.item_id in live], batch_size=2000
        )
        with connection.cursor() as cur:
            cur.execute(
                """
                UPDATE memory_memoryitem AS m
                   SET access_count = m.access_count + v.n,
                       last_seen_at = GREATEST(COALESCE(m.last_seen_at, v.at), v.at)
                  FROM unnest(%s::uuid[], %s::int[], %s::timestamptz[]) AS v(id, n, at)
                 WHERE m.id = v.id
                """,
                [
                    ids,
                    [seen[i][0] for i in ids],
                    [datetime.fromtimestamp(seen[i][1], tz=UTC) for i in ids],
                ],
            )


_PRUNE_SQL = """
DELETE FROM memory_retrievalrecord WHERE id IN (
    SELECT id FROM memory_retrievalrecord
     WHERE created_at < %(cutoff)s
       AND (%(user_id)s::uuid IS NULL OR user_id = %(user_id)s::uuid)
     LIMIT %(n)s)
"""


def retrieval_records_prune(
    *, cutoff: datetime, user_id: uuid.UUID | None = None, batch_size: int = 10_000
) -> int:
    """Delete read provenance from before `cutoff` (of one user, or everyone's);
    returns how many rows (the retention policy of retrieval_records).

    In batches, each its own transaction: the flush keeps writing meanwhile, and
    a prune stopped halfway has kept what it did (running it again is harmless).
    """
    deleted = 0
    while True:
        with connection.cursor() as cur:
            cur.execute(
                _PRUNE_SQL, {"cutoff": cutoff, "user_id": user_id, "n": batch_size}
            )
            n = cur.rowcount
        deleted += n
        if n < batch_size:
            return deleted
