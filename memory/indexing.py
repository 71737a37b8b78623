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
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import CharField, F, Func, Q, QuerySet, Value
from django.db.models.functions import Cast, Concat, Replace
from django.utils import timezone
from django_redis import get_redis_connection
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import RedisError

from audit.services import audit_record
from kimberly.api.errors import NotFound, invalid_field
from kimberly.context import Context
from memory import embeddings
from memory.constants import Status
from memory.models import EMBEDDING_DIMENSIONS, Goal, MemoryEmbedding, MemoryItem
from memory.selectors import parse_memory_id
from users.models import User

logger = logging.getLogger(__name__)

PENDING_KEY = "kb:embed:pending"
SCHEDULED_KEY = "kb:embed:scheduled"
USER_MODEL_TAG = "user-supplied"
FLOAT32_MAX = 3.4e38
FLAG_SECONDS = 960  # > embed_pending's 900 s time limit
RETRY_BACKOFF_MAX = 300  # embed_pending's longest wait between retries
LINGER_POLL_SECONDS = 0.02
SWEEP_CURSOR_KEY = "kb:embed:sweep_cursor"
GOALS_PER_SWEEP = 64


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
        # The hash is compared in SQL so the content does not travel back.
        current = dict(
            MemoryItem.objects.select_for_update()
            .filter(pk__in=[i.id for i, _, _ in rows])
            .order_by("pk")
            .annotate(digest=ContentSHA256("content"))
            .values_list("id", "digest")
        )
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
        MemoryItem.objects.filter(pk__in=[o.item_id for o in objs]).update(
            embedding_ref=Concat(
                Value("emb_"), Replace(Cast("id", CharField()), Value("-"), Value(""))
            )
        )


def memory_drop_vectors(*, items: list[MemoryItem]) -> None:
    """Forget the vectors of items whose content is changing (the caller holds their
    row locks and saves them): semantic search must never match text the user
    removed, even when embeddings are off and nothing re-embeds it yet."""
    MemoryEmbedding.objects.filter(item_id__in=[i.id for i in items]).delete()
    for item in items:
        item.embedding_ref = ""


def _stale_vector_ids(qs: QuerySet[MemoryItem]) -> QuerySet[MemoryItem, uuid.UUID]:
    """Items of `qs` whose stored vector was made from other content."""
    return (
        qs.filter(embedding__isnull=False)
        .annotate(digest=ContentSHA256("content"))
        .exclude(embedding__content_hash=F("digest"))
        .values_list("id", flat=True)
    )


def _drop_stale_vectors(ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """Delete the vectors of these items that no longer match their content,
    re-checked under the item row locks (taken in id order, as writers do)."""
    if not ids:
        return []
    with transaction.atomic():
        list(
            MemoryItem.objects.select_for_update()
            .filter(pk__in=ids)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        stale = list(_stale_vector_ids(MemoryItem.objects.filter(pk__in=ids)))
        MemoryEmbedding.objects.filter(item_id__in=stale).delete()
        MemoryItem.objects.filter(pk__in=stale).update(embedding_ref="")
    return stale


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


@dataclass(frozen=True)
class ReembedResult:
    memories: int
    goals: int


def memory_reembed(*, all_items: bool = False) -> ReembedResult:
    """Queue memories and goals whose vector is missing, was made from other text,
    or comes from another model (user-supplied vectors of unchanged text stay)."""
    qs = MemoryItem.objects.filter(user__embedding_enabled=True)
    if not all_items:
        # Dropped first, so they are never served while they wait (and are then
        # caught by the missing-vector filter below).
        for chunk in _chunks(list(_stale_vector_ids(qs)), 5000):
            _drop_stale_vectors(chunk)
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
    goal_ids = list(goals_needing_vectors(all_goals=all_items))
    for ids in _chunks(goal_ids, GOALS_PER_SWEEP):
        _queue_goals(ids)
    return ReembedResult(memories=count, goals=len(goal_ids))


def _queue_goals(ids: list[int]) -> None:
    from memory.tasks import embed_goals

    embed_goals.delay(ids)


class ContentSHA256(Func):
    """sha256 hex of text with PostgreSQL's built-in sha256() (Django's SHA256 needs
    pgcrypto); equal to embeddings.content_hash."""

    template = "encode(sha256(convert_to(%(expressions)s, 'UTF8')), 'hex')"
    output_field = CharField()


def sweep_unembedded(*, older_than_seconds: int = 60, limit: int = 5000) -> int:
    """Repair what the embed queue lost or never had: re-queue active items with no
    vector, drop and re-queue vectors of changed text (a rolling window of `limit`
    items per run, so every item is checked whatever its age) and embed goals
    whose vector is missing or outdated. Returns how many memories were queued."""
    if not embeddings.enabled():
        return 0
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    missing = list(
        MemoryItem.objects.filter(
            user__embedding_enabled=True,
            status=Status.ACTIVE,
            embedding_ref="",  # the memory_unembedded partial index
            updated_at__lt=cutoff,
        ).values_list("id", flat=True)[:limit]
    )
    window = MemoryItem.objects.filter(pk__in=_next_sweep_window(limit))
    # Only the candidates are locked (and re-checked): a row lock writes the row.
    stale = _drop_stale_vectors(list(_stale_vector_ids(window)))
    enqueue_embedding(missing + stale)
    _repair_goals()
    return len(missing) + len(stale)


def _next_sweep_window(limit: int) -> list[uuid.UUID]:
    """The next `limit` item ids after the cursor kept in Redis, wrapping around."""
    conn = get_redis_connection("default")
    try:
        raw = conn.get(SWEEP_CURSOR_KEY)
    except RedisError:
        raw = None
    qs = MemoryItem.objects.order_by("pk")
    if raw:
        qs = qs.filter(pk__gt=uuid.UUID(raw.decode()))
    window = list(qs.values_list("pk", flat=True)[:limit])
    try:
        if len(window) < limit:
            conn.delete(SWEEP_CURSOR_KEY)  # the end: start over next time
        else:
            conn.set(SWEEP_CURSOR_KEY, str(window[-1]))
    except RedisError:
        logger.warning("sweep cursor not saved; the window is checked again")
    return window


# ---------------------------------------------------------------------- goals


def goals_needing_vectors(*, all_goals: bool = False) -> QuerySet[Goal, int]:
    """Ids of goals of users with embeddings on whose vector is missing, from
    another model, or of other text (`all_goals`: every such user's goal)."""
    qs = Goal.objects.filter(user__embedding_enabled=True)
    if not all_goals:
        qs = qs.annotate(digest=ContentSHA256("text")).filter(
            Q(vector__isnull=True)
            | ~Q(model=embeddings.model_tag())
            | ~Q(content_hash=F("digest"))
        )
    return qs.order_by("pk").values_list("pk", flat=True)


def goals_embed(goal_ids: list[int]) -> int:
    """Embed these goals' text with the current model; returns how many."""
    goals = list(
        Goal.objects.filter(pk__in=goal_ids, user__embedding_enabled=True).order_by(
            "pk"
        )
    )
    if not goals:
        return 0
    vectors = embeddings.embed_texts([g.text for g in goals])
    tag = embeddings.model_tag()
    for goal, vector in zip(goals, vectors, strict=True):
        goal.vector = vector
        goal.model = tag
        goal.content_hash = embeddings.content_hash(goal.text)
    Goal.objects.bulk_update(goals, ["vector", "model", "content_hash"])
    return len(goals)


def _repair_goals() -> None:
    try:
        goals_embed(list(goals_needing_vectors()[:GOALS_PER_SWEEP]))
    except embeddings.EmbeddingUnavailable:
        logger.warning("goal vectors not repaired: the model is unavailable")


def _chunks(it: Iterable[Any], size: int) -> Iterable[list[Any]]:
    chunk: list[Any] = []
    for x in it:
        chunk.append(x)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
