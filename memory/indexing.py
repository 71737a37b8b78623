"""Keeping memories semantically searchable: the embed queue, batch embedding,
user-supplied vectors and re-embedding after a model change.

Flow: a write commits → its id joins a Redis set and one `embed_pending` task is
scheduled (unless one already is) → the worker drains the set in batches, so a
burst of writes becomes a few batched model calls. The set is only a queue: a
sweep task finds anything it lost (Redis restart) from PostgreSQL.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import CharField, F, Func, Q
from django.utils import timezone
from django_redis import get_redis_connection
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import RedisError

from audit.services import audit_record
from kimberly.api.errors import NotFound, invalid_field
from kimberly.context import Context
from memory import embeddings, metrics
from memory.constants import Status
from memory.models import EMBEDDING_DIMENSIONS, MemoryEmbedding, MemoryItem
from memory.selectors import parse_memory_id
from users.models import User

logger = logging.getLogger(__name__)

PENDING_KEY = "kb:embed:pending"
SCHEDULED_KEY = "kb:embed:scheduled"
USER_MODEL_TAG = "user-supplied"
FLOAT32_MAX = 3.4e38
FLAG_SECONDS = 960  # > embed_pending's 900 s time limit


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


def drain_pending(batch_size: int = 64, max_batches: int = 50) -> int:
    """Embed what is queued, in batches; returns how many were embedded.

    Stops after `max_batches` and hands over to a fresh task, so one task never
    runs into its time limit under sustained writes.
    """
    conn = get_redis_connection("default")
    done = 0
    try:
        for _ in range(max_batches):
            raw = conn.spop(PENDING_KEY, batch_size)
            if not raw:
                break
            ids = [uuid.UUID(r.decode() if isinstance(r, bytes) else r) for r in raw]
            try:
                done += memory_embed_items(ids)
            except embeddings.EmbeddingUnavailable:
                conn.sadd(PENDING_KEY, *[str(i) for i in ids])  # nothing is dropped
                raise
    finally:
        conn.delete(SCHEDULED_KEY)
    # A write that queued itself after our last SPOP but before the flag was
    # cleared would otherwise wait for the sweep.
    backlog = conn.scard(PENDING_KEY)
    metrics.embedding_backlog.set(backlog)
    if backlog:
        _schedule_drain(conn)
    return done


def memory_embed_items(item_ids: list[uuid.UUID]) -> int:
    """Embed these items' current content (skipping ones already embedded as is)."""
    items = list(
        MemoryItem.objects.filter(pk__in=item_ids, user__embedding_enabled=True)
        .select_related("embedding")
        .only("id", "user_id", "content", "embedding__content_hash", "embedding__model")
    )
    tag = embeddings.model_tag()
    todo = []
    for item in items:
        existing = getattr(item, "embedding", None)
        digest = embeddings.content_hash(item.content)
        if existing is None or existing.content_hash != digest:
            todo.append((item, digest))
        elif existing.model not in (tag, USER_MODEL_TAG):
            todo.append(
                (item, digest)
            )  # embedded by an older model; the user's own stay
    if not todo:
        return 0
    vectors = embeddings.embed_texts([item.content for item, _ in todo])
    _store_vectors(
        [
            (item, digest, vector)
            for (item, digest), vector in zip(todo, vectors, strict=True)
        ],
        tag,
    )
    return len(todo)


def _store_vectors(rows: list[tuple[MemoryItem, str, Any]], tag: str) -> None:
    with transaction.atomic():
        # Lock the items in id order (every writer of these rows does), then keep
        # only those whose content is still what was embedded: an item deleted or
        # edited meanwhile is skipped; its edit queued a fresh embed of its own.
        current = {
            pk: embeddings.content_hash(content)
            for pk, content in MemoryItem.objects.select_for_update()
            .filter(pk__in=[i.id for i, _, _ in rows])
            .order_by("pk")
            .values_list("id", "content")
        }
        objs = [
            MemoryEmbedding(
                item_id=item.id,
                user_id=item.user_id,
                vector=vector,
                model=tag,
                content_hash=digest,
            )
            for item, digest, vector in sorted(rows, key=lambda r: r[0].id)
            if current.get(item.id) == digest
        ]
        MemoryEmbedding.objects.bulk_create(
            objs,
            update_conflicts=True,
            unique_fields=["item"],
            update_fields=["vector", "model", "content_hash", "created_at"],
        )
        MemoryItem.objects.bulk_update(
            [
                MemoryItem(id=o.item_id, embedding_ref=f"emb_{o.item_id.hex}")
                for o in objs
            ],
            ["embedding_ref"],
        )


def memory_embed_user_vectors(*, ctx: Context, user: User, rows: Any) -> dict[str, int]:
    """Store vectors computed elsewhere by the user: 384 finite floats per own id."""
    if not isinstance(rows, list) or not rows:
        raise invalid_field(
            "embeddings", "must be a non-empty list of {memory_id, embedding}"
        )
    if len(rows) > 500:
        raise invalid_field("embeddings", "at most 500 per request")
    parsed: dict[uuid.UUID, list[float]] = {}
    for n, row in enumerate(rows):
        if not isinstance(row, dict) or set(row) != {"memory_id", "embedding"}:
            raise invalid_field(f"embeddings[{n}]", "must be {memory_id, embedding}")
        vector = row["embedding"]
        if not isinstance(vector, list) or len(vector) != EMBEDDING_DIMENSIONS:
            raise invalid_field(
                f"embeddings[{n}].embedding",
                f"must have {EMBEDDING_DIMENSIONS} numbers",
            )
        if not all(
            isinstance(x, int | float)
            and not isinstance(x, bool)
            and math.isfinite(x)
            and abs(x) <= FLOAT32_MAX
            for x in vector
        ):
            raise invalid_field(
                f"embeddings[{n}].embedding",
                "must be finite numbers within float32 range",
            )
        norm = math.sqrt(sum(float(x) * float(x) for x in vector))
        if norm < 1e-6:
            # A zero vector has no direction: cosine distance to it is NaN.
            raise invalid_field(
                f"embeddings[{n}].embedding", "must not be (nearly) all zeros"
            )
        try:
            parsed[parse_memory_id(row["memory_id"])] = [float(x) for x in vector]
        except NotFound:
            raise invalid_field(
                f"embeddings[{n}].memory_id", "is not one of your memories"
            ) from None
    items = {i.id: i for i in MemoryItem.objects.filter(user=user, pk__in=list(parsed))}
    missing = [f"mem_{pk}" for pk in parsed if pk not in items]
    if missing:
        raise invalid_field(
            "embeddings", f"not your memories: {', '.join(missing[:10])}"
        )
    _store_vectors(
        [
            (items[pk], embeddings.content_hash(items[pk].content), vec)
            for pk, vec in parsed.items()
        ],
        USER_MODEL_TAG,
    )
    audit_record(
        ctx=ctx,
        action="memory.embed",
        user_id=user.pk,
        target_type="memory",
        details={"count": len(parsed)},
    )
    return {"received": len(rows), "stored": len(parsed)}


def memory_reembed(*, all_items: bool = False) -> int:
    """Queue items embedded by another model (or never) for the current model."""
    qs = MemoryItem.objects.filter(user__embedding_enabled=True)
    if not all_items:
        qs = qs.filter(
            Q(embedding__isnull=True)
            | (
                ~Q(embedding__model=embeddings.model_tag())
                & ~Q(embedding__model=USER_MODEL_TAG)
            )
        )
    count = 0
    for chunk in _chunks(
        qs.values_list("id", flat=True).iterator(chunk_size=5000), 5000
    ):
        enqueue_embedding(chunk)
        count += len(chunk)
    return count


class ContentSHA256(Func):
    """sha256 hex of text with PostgreSQL's built-in sha256() (Django's SHA256 needs
    pgcrypto); equal to embeddings.content_hash."""

    template = "encode(sha256(convert_to(%(expressions)s, 'UTF8')), 'hex')"
    output_field = CharField()


def sweep_unembedded(*, older_than_seconds: int = 60, limit: int = 5000) -> int:
    """Re-queue active items that should have a vector but have none (lost queue)."""
    if not embeddings.enabled():
        return 0
    now = timezone.now()
    cutoff = now - timedelta(seconds=older_than_seconds)
    active = MemoryItem.objects.filter(
        user__embedding_enabled=True, status=Status.ACTIVE, updated_at__lt=cutoff
    )
    missing = list(
        active.filter(embedding__isnull=True).values_list("id", flat=True)[:limit]
    )
    # Edited since embedded and the re-embed got lost: compare content hashes, in
    # SQL, for recent edits only (hashing every row every minute would not scale).
    stale = list(
        active.filter(
            updated_at__gt=now - timedelta(days=1),
            embedding__created_at__lt=F("updated_at"),
        )
        .annotate(digest=ContentSHA256("content"))
        .exclude(embedding__content_hash=F("digest"))
        .values_list("id", flat=True)[:limit]
    )
    enqueue_embedding(missing + stale)
    return len(missing) + len(stale)


def _chunks(it: Iterable[Any], size: int) -> Iterable[list[Any]]:
    chunk: list[Any] = []
    for x in it:
        chunk.append(x)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
