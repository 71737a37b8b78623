"""Fusion and re-ranking of candidates, with every component and a reason."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.postgres.search import SearchQuery
from django.db.models import Case, FloatField, QuerySet, Value, When
from pgvector.django import CosineDistance

from memory.constants import Tier
from memory.models import MemoryItem
from memory.retrieval.candidates import TOKEN, QueryFilters, text_rank


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


def score_hits(
    base: QuerySet[MemoryItem],
    ids: list[uuid.UUID],
    tsq: SearchQuery | None,
    vector: np.ndarray[Any, Any] | None,
    mode: str,
    now: datetime,
) -> list[Hit]:
    # Scores only: whole rows (content and all) are read for the top-k alone.
    qs = base.filter(pk__in=ids).annotate(
        lex=text_rank(tsq)
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


def why(hit: Hit, query: str, filters: QueryFilters) -> str:
    reasons = []
    text = hit.item.content.lower()
    words = [t for t in dict.fromkeys(TOKEN.findall(query.lower())) if len(t) > 2]
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
