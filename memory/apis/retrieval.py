"""Hybrid retrieval (POST /v1/memory/query) and user-supplied vectors (POST /v1/memory/embed)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from kimberly.api.serializers import NonBlank, StrictInput, documented_json, parse
from kimberly.context import context_from_request, current_user
from memory import indexing, retrieval
from memory.apis.schemas import (
    EMBEDDING_ROWS,
    EmbedOutput,
    MemoryQueryOutput,
    tag_list,
)
from memory.constants import Source, Tier
from memory.outputs import memory_out


class QueryFiltersInput(StrictInput):
    tags = tag_list(required=False)
    tags_mode = serializers.ChoiceField(choices=["any", "all"], default="any")
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    source = documented_json(  # type: ignore[assignment]
        serializers.ChoiceField(choices=Source.choices), required=False
    )
    include_sensitive = serializers.BooleanField(default=False)


class MemoryQueryInput(StrictInput):
    query = serializers.CharField(
        trim_whitespace=False,
        max_length=retrieval.MAX_QUERY_CHARS,
        validators=[NonBlank()],
    )
    type = serializers.ChoiceField(choices=[*Tier.values, "any"], default="any")
    top_k = serializers.IntegerField(default=5, min_value=1, max_value=50)
    filters = QueryFiltersInput(required=False)
    explain = serializers.BooleanField(default=False)


class MemoryQueryApi(APIView):
    @extend_schema(request=MemoryQueryInput, responses={200: MemoryQueryOutput})
    def post(self, request: Request) -> Response:
        data = parse(MemoryQueryInput, request.data)
        result = retrieval.memory_query(
            user=current_user(request),
            query=data["query"],
            tier=data["type"],
            top_k=data["top_k"],
            filters=retrieval.QueryFilters(**data.get("filters", {})),
            request_id=getattr(request, "request_id", ""),
        )
        body: dict[str, Any] = {
            "results": [
                {
                    "item": memory_out(h.item),
                    "relevance": {
                        "semantic": h.semantic,
                        "lexical": h.lexical,
                        "score": h.score,
                        "freshness": round(h.freshness, 6),
                        "final": round(h.final, 6),
                    },
                    "why": h.why,
                }
                for h in result.hits
            ]
        }
        if data["explain"]:
            body["explain"] = {
                "mode": result.mode,
                "fused_relevance": [round(h.relevance, 6) for h in result.hits],
                "timings_ms": result.timings_ms,
                "formula": "final = λ·relevance + (1-λ)·score + w·exp(-days/30)",
                "lambda": settings.RETRIEVAL_LAMBDA,
                "freshness_weight": settings.RETRIEVAL_FRESHNESS_WEIGHT,
                "fusion": settings.RETRIEVAL_FUSION,
            }
        return Response(body)


class MemoryEmbedInput(StrictInput):
    embeddings = documented_json(EMBEDDING_ROWS)


class MemoryEmbedApi(APIView):
    @extend_schema(request=MemoryEmbedInput, responses={200: EmbedOutput})
    def post(self, request: Request) -> Response:
        data = parse(MemoryEmbedInput, request.data)
        counts = indexing.memory_embed_user_vectors(
            ctx=context_from_request(request),
            user=current_user(request),
            rows=data["embeddings"],
        )
        return Response(counts)
