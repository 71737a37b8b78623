"""Candidates for a query: the user's pre-filtered rows, matched by full text and by vector."""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVectorField
from django.db.models import F, Func, QuerySet, Value
from django_redis import get_redis_connection
from pgvector.django import CosineDistance
from redis.exceptions import RedisError

from memory import embeddings
from memory.constants import Status
from memory.models import MemoryEmbedding, MemoryItem
from memory.selectors import filter_items
from users.models import User

logger = logging.getLogger(__name__)


TOKEN = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class QueryFilters:
    tags: list[str] | None = None
    tags_mode: str = "any"
    since: datetime | None = None
    until: datetime | None = None
    source: str | None = None
    include_sensitive: bool = False


def prefiltered(user: User, tier: str, filters: QueryFilters) -> QuerySet[MemoryItem]:
    """Only what may ever be returned: the user's active items matching the
    filters, never one whose consent was withdrawn (`consent` False)."""
    qs = filter_items(
        MemoryItem.objects.filter(user=user, status=Status.ACTIVE, consent=True),
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


def or_query(query: str) -> SearchQuery | None:
    """Any-term full-text query. Tokens are \\w+ only, so no tsquery syntax gets in."""
    tokens = list(dict.fromkeys(t.lower() for t in TOKEN.findall(query)))
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


def text_rank(tsq: SearchQuery) -> SearchRank:
    return SearchRank(F("search_vector"), tsq, cover_density=True, normalization=32)


def lexical_candidates(
    base: QuerySet[MemoryItem], tsq: SearchQuery, n: int
) -> list[uuid.UUID]:
    return list(
        base.annotate(doc=_UnindexedTsvector("search_vector"))
        .filter(doc=tsq)
        .annotate(lex=text_rank(tsq))
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
