"""Hybrid retrieval: pre-filter → lexical + semantic candidates → fusion → re-rank.

    final = λ·relevance + (1-λ)·score + w·freshness,   freshness = exp(-days/30)

`relevance` is the fused lexical/semantic match in [0, 1]. Every component is
returned, with a sentence saying why the item matched. Access counts and
provenance are logged to Redis and written to PostgreSQL in batches by a task.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from kimberly.api.errors import invalid_field
from memory import embeddings, metrics
from memory.constants import Source, Tier
from memory.retrieval.candidates import (
    QueryFilters,
    lexical_candidates,
    or_query,
    prefiltered,
    query_vector,
    semantic_candidates,
)
from memory.retrieval.provenance import log_retrieval
from memory.retrieval.ranking import Hit, score_hits, why
from memory.short_term import short_term_context
from users.models import User

logger = logging.getLogger(__name__)


MAX_QUERY_CHARS = 2000


MODES = ("hybrid", "lexical", "semantic")


@dataclass
class QueryResult:
    hits: list[Hit]
    mode: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    # The live session entries (short-term, latest first) that competed.
    session_ids: list[uuid.UUID] = field(default_factory=list)


@contextmanager
def _stage(name: str, timings: dict[str, float]) -> Iterator[None]:
    started = time.perf_counter()
    yield
    elapsed = time.perf_counter() - started
    timings[name] = round(elapsed * 1000, 3)
    metrics.retrieval_seconds.labels(stage=name).observe(elapsed)


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
    tsq = or_query(query)

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
    session: list[uuid.UUID] = []
    if tier in ("any", Tier.SHORT_TERM):
        # The live session context always competes (from Redis, cheap).
        session = [
            uuid.UUID(entry["id"][4:])
            for entry in short_term_context(user_id=user.pk, limit=10)
        ]
        candidates.update(dict.fromkeys(i for i in session if i not in candidates))
    if not candidates:
        return QueryResult([], effective, timings, session)

    with _stage("rerank", timings):
        hits = score_hits(
            base, list(candidates), tsq, vector, effective, now or timezone.now()
        )
        hits = hits[:top_k]
        items = base.in_bulk([h.item_id for h in hits])
        hits = [h for h in hits if h.item_id in items]
        for h in hits:
            h.item = items[h.item_id]
            h.why = why(h, query, filters)
    if log and hits:
        log_retrieval(user.pk, request_id, [(h.item_id, h.final) for h in hits])
    return QueryResult(hits, effective, timings, session)
