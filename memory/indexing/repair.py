"""Repair: vectors missing, of changed text or of another model, for memories and goals, found by the sweep or `memory reembed` and queued again."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from django_redis import get_redis_connection
from redis.exceptions import RedisError

from memory import embeddings, sealing
from memory.constants import Status
from memory.indexing.queue import enqueue_embedding
from memory.indexing.vectors import USER_MODEL_TAG, ContentSHA256
from memory.models import Goal, MemoryEmbedding, MemoryItem
from memory.selectors import with_vector_consent

logger = logging.getLogger(__name__)


SWEEP_CURSOR_KEY = "kb:embed:sweep_cursor"


GOALS_PER_SWEEP = 64


def _stale_vector_ids(qs: QuerySet[MemoryItem]) -> list[uuid.UUID]:
    """Items of `qs` whose stored vector was made from other content, or that
    may not have one (sensitive, without the consent: memory.sealing)."""
    embedded = qs.filter(embedding__isnull=False)
    plain = (
        embedded.filter(sealed__isnull=True)
        .annotate(digest=ContentSHA256("content"))
        .exclude(embedding__content_hash=F("digest"))
        .values_list("id", flat=True)
    )
    # A sealed item's hash is of its opened text: compared here, not in SQL.
    sealed = [
        pk
        for pk, user_id, blob, digest in embedded.filter(
            sealed__isnull=False
        ).values_list("id", "user_id", "sealed", "embedding__content_hash")
        if blob is not None
        and embeddings.content_hash(sealing.opened(user_id, blob)) != digest
    ]
    refused = embedded.exclude(pk__in=with_vector_consent(embedded).values("pk"))
    return list({*plain, *sealed, *refused.values_list("id", flat=True)})


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


@dataclass(frozen=True)
class ReembedResult:
    memories: int
    goals: int


def memory_reembed(*, all_items: bool = False) -> ReembedResult:
    """Queue memories and goals whose vector is missing, was made from other text,
    or comes from another model (user-supplied vectors of unchanged text stay)."""
    qs = with_vector_consent(MemoryItem.objects.filter(user__embedding_enabled=True))
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


def sweep_unembedded(*, older_than_seconds: int = 60, limit: int = 5000) -> int:
    """Repair what the embed queue lost or never had: re-queue active items with no
    vector, drop and re-queue vectors of changed text (a rolling window of `limit`
    items per run, so every item is checked whatever its age) and embed goals
    whose vector is missing or outdated. Returns how many memories were queued."""
    if not embeddings.enabled():
        return 0
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    missing = list(
        with_vector_consent(
            MemoryItem.objects.filter(
                user__embedding_enabled=True,
                status=Status.ACTIVE,
                embedding_ref="",  # the memory_unembedded partial index
                updated_at__lt=cutoff,
            )
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
