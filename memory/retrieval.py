"""Hybrid retrieval: pre-filter → lexical + semantic candidates → fusion → re-rank.

    final = λ·relevance + (1-λ)·score + w·freshness,   freshness = exp(-days/30)

`relevance` is the fused lexical/semantic match in [0, 1]. Every component is
returned, with a sentence saying why the item matched. Access counts and
provenance are logged to Redis and written to PostgreSQL in batches by a task.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVectorField
from django.db import connection, transaction
from django.db.models import Case, F, FloatField, Func, QuerySet, Value, When
from django.utils import timezone
from django_redis import get_redis_connection
from pgvector.django import CosineDistance
from redis.exceptions import RedisError

from kimberly.api.errors import invalid_field
from memory import embeddings, metrics
from memory.constants import Source, Status, Tier
from memory.models import MemoryEmbedding, MemoryItem, RetrievalRecord
from memory.selectors import filter_items
from memory.short_term import short_term_context
from users.models import User

logger = logging.getLogger(__name__)

MAX_QUERY_CHARS = 2000
MODES = ("hybrid", "lexical", "semantic")
LOG_KEY = "kb:retrieval:log"
_TOKEN = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class QueryFilters:
    tags: list[str] | None = None
    tags_mode: str = "any"
    since: datetime | None = None
    until: datetime | None = None
    source: str | None = None
    include_sensitive: bool = False


@dataclass
class Hit:
    item_id: uuid.UUID
    tier: str
    tags: list[str]
    semantic: float | None
    lexical: float | None
    score: float
    freshness: float
    relevance: float = 0.0
    final: float = 0.0
    why: str = ""
    item: MemoryItem = field(init=False)


@dataclass
class QueryResult:
    hits: list[Hit]
    mode: str
    timings_ms: dict[str, float] = field(default_factory=dict)


@contextmanager
def _stage(name: str, timings: dict[str, float]) -> Iterator[None]:
    started = time.perf_counter()
    yield
    elapsed = time.perf_counter() - started
    timings[name] = round(elapsed * 1000, 3)
    metrics.retrieval_seconds.labels(stage=name).observe(elapsed)


# ------------------------------------------------------------------ validation


def validate_query(
    query: Any, tier: Any, top_k: Any, filters: QueryFilters
) -> tuple[str, str, int]:
    if not isinstance(query, str) or not query.strip():
        raise invalid_field("query", "must be a non-empty string")
    if len(query) > MAX_QUERY_CHARS:
        raise invalid_field("query", f"at most {MAX_QUERY_CHARS} characters")
    if tier not in (*Tier.values, "any"):
        raise invalid_field("type", f"must be one of {', '.join(Tier.values)} or any")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= 50:
        raise invalid_field("top_k", "must be an integer from 1 to 50")
    if filters.tags_mode not in ("any", "all"):
        raise invalid_field("filters.tags_mode", "must be any or all")
    if filters.source is not None and filters.source not in Source.values:
        raise invalid_field(
            "filters.source", f"must be one of {', '.join(Source.values)}"
        )
    if filters.since and filters.until and filters.since >= filters.until:
        raise invalid_field("filters.since", "must be before filters.until")
    return query.strip(), tier, top_k


# ------------------------------------------------------------------ candidates


def prefiltered(user: User, tier: str, filters: QueryFilters) -> QuerySet[MemoryItem]:
    """Only what may ever be returned: the user's active items matching the filters."""
    qs = filter_items(
        MemoryItem.objects.filter(user=user, status=Status.ACTIVE),
        tier=None if tier == "any" else tier,
        tags=filters.tags,
        tags_mode=filters.tags_mode,
        since=filters.since,
        until=filters.until,
        source=filters.source,
    )
    if not filters.include_sensitive:
        qs = qs.filter(sensitive=False)
    return qs.defer("search_vector")


def _or_query(query: str) -> SearchQuery | None:
    """Any-term full-text query. Tokens are \\w+ only, so no tsquery syntax gets in."""
    tokens = list(dict.fromkeys(t.lower() for t in _TOKEN.findall(query)))
    if not tokens:
        return None
    return SearchQuery(" | ".join(tokens), search_type="raw", config="english")


class _UnindexedTsvector(Func):
    """`search_vector || ''`: the same document, but not the GIN index's expression.

    With the index, PostgreSQL intersects the user's rows with every row of every
    user matching any query term (tens of thousands at 1M memories: ~20-50 ms).
    Testing the user's own rows is ~1 ms (bench/retrieval_speed.py).
    """

    template = "(%(expressions)s || ''::tsvector)"
    output_field = SearchVectorField()


def _rank(tsq: SearchQuery) -> SearchRank:
    return SearchRank(F("search_vector"), tsq, cover_density=True, normalization=32)


def lexical_candidates(
    base: QuerySet[MemoryItem], tsq: SearchQuery, n: int
) -> list[uuid.UUID]:
    return list(
        base.annotate(doc=_UnindexedTsvector("search_vector"))
        .filter(doc=tsq)
        .annotate(lex=_rank(tsq))
        .order_by("-lex", "-updated_at")
        .values_list("id", flat=True)[:n]
    )


def semantic_candidates(
    user: User, base: QuerySet[MemoryItem], vector: np.ndarray[Any, Any], n: int
) -> list[uuid.UUID]:
    """Nearest items by cosine distance, within the pre-filter.

    "exact" scans the user's own vectors (B-tree on user, then a sort): exact
    whatever the filters, cost linear in the user's vectors. "hnsw" walks the
    global HNSW graph with pgvector 0.8's iterative scan until enough rows pass
    the filters: faster for big users, but for a user with few vectors among
    millions it would scan up to hnsw.max_scan_tuples and still come back short.
    "auto" (default) takes exact up to RETRIEVAL_EXACT_MAX_VECTORS vectors and
    HNSW above, falling back to exact when HNSW comes back short. Measured in
    bench/reports/retrieval_speed.md.
    """
    strategy = settings.RETRIEVAL_VECTOR_STRATEGY
    if strategy == "auto":
        count = MemoryEmbedding.objects.filter(user=user).count()
        strategy = "exact" if count <= settings.RETRIEVAL_EXACT_MAX_VECTORS else "hnsw"
    if strategy == "hnsw":
        found = _hnsw_candidates(user, base, vector, n)
        if len(found) == n:
            return found
    return _exact_candidates(base, vector, n)


def _hnsw_candidates(
    user: User, base: QuerySet[MemoryItem], vector: np.ndarray[Any, Any], n: int
) -> list[uuid.UUID]:
    # hnsw.iterative_scan=relaxed_order and ef_search are set per connection
    # (DATABASES OPTIONS): four round trips fewer than SET LOCAL in a transaction.
    return list(
        MemoryEmbedding.objects.filter(user=user, item__in=base)
        .order_by(CosineDistance("vector", vector))
        .values_list("item_id", flat=True)[:n]
    )


def _exact_candidates(
    base: QuerySet[MemoryItem], vector: np.ndarray[Any, Any], n: int
) -> list[uuid.UUID]:
    # "+ 0" keeps the planner off the HNSW index: this is a scan of the user's
    # own vectors, exact by construction.
    return list(
        base.filter(embedding__isnull=False)
        .annotate(dist=CosineDistance("embedding__vector", vector) + Value(0.0))
        .order_by("dist")
        .values_list("id", flat=True)[:n]
    )


def query_vector(query: str, user_id: uuid.UUID) -> np.ndarray[Any, Any] | None:
    """The query's embedding, from the Redis cache when this user asked it before.

    Keyed per user: a shared cache would let cache timing tell one user what
    another had asked.
    """
    digest = hashlib.sha256(f"{user_id}:{query}".encode()).hexdigest()
    key = f"kb:qemb:{embeddings.model_tag()}:{digest}"
    conn = None
    try:
        conn = get_redis_connection("default")
        cached = conn.get(key)
        if cached:
            return np.frombuffer(cached, dtype=np.float32)
    except RedisError:
        conn = None
    try:
        vector = embeddings.embed_texts([query])[0]
    except embeddings.EmbeddingUnavailable:
        logger.warning("query embedding failed; answering lexically")
        return None
    if conn is not None:
        try:
            conn.set(
                key,
                vector.astype(np.float32).tobytes(),
                ex=settings.QUERY_EMBEDDING_CACHE_SECONDS,
            )
        except RedisError:
            pass
    return vector


# ---------------------------------------------------------------------- query


def memory_query(
    *,
    user: User,
    query: Any,
    tier: Any = "any",
    top_k: Any = 5,
    filters: QueryFilters | None = None,
    mode: str = "hybrid",
    request_id: str = "",
    log: bool = True,
    now: datetime | None = None,
) -> QueryResult:
    """The user's top-k memories for `query`, with every score and a reason."""
    filters = filters or QueryFilters()
    query, tier, top_k = validate_query(query, tier, top_k, filters)
    assert mode in MODES
    timings: dict[str, float] = {}
    n = max(settings.RETRIEVAL_CANDIDATES, top_k * 4)
    base = prefiltered(user, tier, filters)
    tsq = _or_query(query)

    vector = None
    if mode != "lexical" and embeddings.enabled() and user.embedding_enabled:
        with _stage("embed", timings):
            vector = query_vector(query, user.pk)
    effective = mode if (vector is not None or mode == "lexical") else "lexical"

    candidates: dict[uuid.UUID, None] = {}
    if effective in ("hybrid", "lexical") and tsq is not None:
        with _stage("lexical", timings):
            candidates.update(dict.fromkeys(lexical_candidates(base, tsq, n)))
    if effective in ("hybrid", "semantic") and vector is not None:
        with _stage("semantic", timings):
            candidates.update(dict.fromkeys(semantic_candidates(user, base, vector, n)))
    if tier in ("any", Tier.SHORT_TERM):
        # The live session context always competes (from Redis, cheap).
        for entry in short_term_context(user_id=user.pk, limit=10):
            candidates.setdefault(uuid.UUID(entry["id"][4:]), None)
    if not candidates:
        return QueryResult([], effective, timings)

    with _stage("rerank", timings):
        hits = _score(
            base, list(candidates), tsq, vector, effective, now or timezone.now()
        )
        hits = hits[:top_k]
        items = base.in_bulk([h.item_id for h in hits])
        hits = [h for h in hits if h.item_id in items]
        for h in hits:
            h.item = items[h.item_id]
            h.why = _why(h, query, filters)
    if log and hits:
        _log_retrieval(user.pk, request_id, hits)
    return QueryResult(hits, effective, timings)


def _score(
    base: QuerySet[MemoryItem],
    ids: list[uuid.UUID],
    tsq: SearchQuery | None,
    vector: np.ndarray[Any, Any] | None,
    mode: str,
    now: datetime,
) -> list[Hit]:
    # Scores only: whole rows (content and all) are read for the top-k alone.
    qs = base.filter(pk__in=ids).annotate(
        lex=_rank(tsq)
        if tsq is not None and mode != "semantic"
        else Value(None, FloatField()),
        sim=(
            Case(
                When(embedding__isnull=True, then=None),
                default=1.0 - CosineDistance("embedding__vector", vector),
                output_field=FloatField(),
            )
            if vector is not None and mode != "lexical"
            else Value(None, FloatField())
        ),
    )
    hits = []
    for pk, tier, tags, score, updated_at, lex, sim in qs.values_list(
        "id", "tier", "tags", "score", "updated_at", "lex", "sim"
    ):
        days = max(0.0, (now - updated_at).total_seconds() / 86400)
        hits.append(
            Hit(
                item_id=pk,
                tier=tier,
                tags=tags,
                semantic=_opt(sim),
                lexical=_opt(lex),
                score=score,
                freshness=math.exp(-days / settings.RETRIEVAL_FRESHNESS_DAYS),
            )
        )
    _fuse(hits, mode)
    # A candidate with no evidence at all (a session item that shares nothing
    # with the query) must not ride in on freshness alone.
    hits = [h for h in hits if h.relevance > 0]
    lam, w = settings.RETRIEVAL_LAMBDA, settings.RETRIEVAL_FRESHNESS_WEIGHT
    for h in hits:
        h.final = lam * h.relevance + (1 - lam) * h.score + w * h.freshness
    hits.sort(key=lambda h: (-h.final, -(h.relevance), str(h.item_id)))
    return hits


def _opt(value: Any) -> float | None:
    if value is None or math.isnan(float(value)):
        return None  # NaN: no direction to compare (e.g. a zero vector)
    return round(float(value), 6)


def _fuse(hits: list[Hit], mode: str) -> None:
    """Relevance in [0, 1] from the lexical and semantic evidence of each candidate."""
    if settings.RETRIEVAL_FUSION == "rrf":
        k = 60.0
        lex_rank = _ranks(hits, lambda h: h.lexical)
        sem_rank = _ranks(hits, lambda h: h.semantic)
        best = (1 / (k + 1)) * (2 if mode == "hybrid" else 1)
        for h in hits:
            total = 0.0
            if id(h) in lex_rank:
                total += 1 / (k + lex_rank[id(h)])
            if id(h) in sem_rank:
                total += 1 / (k + sem_rank[id(h)])
            h.relevance = total / best
        return
    # Weighted: semantic similarity as is, lexical rank scaled by the best match.
    top_lex = max((h.lexical or 0.0 for h in hits), default=0.0)
    alpha = {"semantic": 1.0, "lexical": 0.0}.get(
        mode, settings.RETRIEVAL_SEMANTIC_WEIGHT
    )
    for h in hits:
        sem = max(0.0, h.semantic or 0.0)
        lex = (h.lexical or 0.0) / top_lex if top_lex > 0 else 0.0
        h.relevance = alpha * sem + (1 - alpha) * lex


def _ranks(hits: list[Hit], key: Any) -> dict[int, int]:
    scored = [h for h in hits if key(h) is not None and key(h) > 0]
    scored.sort(key=lambda h: -key(h))
    return {id(h): r for r, h in enumerate(scored, start=1)}


def _why(hit: Hit, query: str, filters: QueryFilters) -> str:
    reasons = []
    text = hit.item.content.lower()
    words = [t for t in dict.fromkeys(_TOKEN.findall(query.lower())) if len(t) > 2]
    matched = [w for w in words if w in text]
    if matched and hit.lexical:
        reasons.append("matched words: " + ", ".join(matched[:6]))
    tags = set(hit.item.tags)
    tag_hits = [t for t in (filters.tags or []) if t in tags] + [
        t for t in tags if t.lower() in words
    ]
    if tag_hits:
        reasons.append("matched tags: " + ", ".join(dict.fromkeys(tag_hits)))
    if hit.semantic is not None:
        reasons.append(f"{hit.semantic:.2f} similar to your query")
    if hit.item.tier == Tier.SHORT_TERM:
        reasons.append("in your current session")
    if hit.freshness > 0.5:
        reasons.append("recent")
    if hit.score > 0:
        reasons.append(f"importance score {hit.score:.2f}")
    return "; ".join(reasons) or "closest available match"


# ----------------------------------------------------------- access/provenance


def _log_retrieval(user_id: uuid.UUID, request_id: str, hits: list[Hit]) -> None:
    entry = json.dumps(
        {
            "u": str(user_id),
            "r": request_id[:64],
            "t": time.time(),
            "h": [
                [str(h.item_id), rank, round(h.final, 6)]
                for rank, h in enumerate(hits, 1)
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
                    rank=rank,
                    final=final,
                    created_at=at,
                )
            )
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
    with transaction.atomic():
        # Lock in id order, like every other multi-row writer of items, so this
        # batch update cannot deadlock with a user's bulk action.
        live = set(
            MemoryItem.objects.select_for_update()
            .filter(pk__in=ids)
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
    SELECT id FROM memory_retrievalrecord WHERE created_at < %(cutoff)s LIMIT %(n)s)
"""


def retrieval_records_prune(*, older_than_days: int, batch_size: int = 10_000) -> int:
    """Delete read provenance older than `older_than_days`; returns how many rows.

    In batches, each its own transaction: the flush keeps writing meanwhile, and
    a prune stopped halfway has kept what it did (running it again is harmless).
    """
    cutoff = timezone.now() - timedelta(days=older_than_days)
    deleted = 0
    while True:
        with connection.cursor() as cur:
            cur.execute(_PRUNE_SQL, {"cutoff": cutoff, "n": batch_size})
            n = cur.rowcount
        deleted += n
        if n < batch_size:
            return deleted
