"""HTTP API for memories: authenticate → parse → one service/selector → serialize."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from kimberly.api.pagination import PagePagination, PageQuery
from kimberly.api.parsers import MAX_INT
from kimberly.api.schema import error_responses
from kimberly.api.serializers import NonBlank, StrictInput, documented_json, parse
from kimberly.context import context_from_request, current_user
from memory import indexing, meditation, retrieval, selectors, services
from memory.constants import MAX_BULK_IDS, Source, Status, Tier
from memory.metadata import metadata_of
from memory.models import MemoryItem
from memory.schemas import (
    EMBEDDING_ROWS,
    BulkOutput,
    EmbedOutput,
    ForecastOutput,
    GoalListOutput,
    GoalOutput,
    MeditationDetailOutput,
    MeditationRunOutput,
    MemoryHistoryOutput,
    MemoryItemOutput,
    MemoryQueryOutput,
    MemoryVersionOutput,
    MetadataInput,
    MetricsOutput,
    ScoreRecordOutput,
    tag_list,
)


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def memory_out(item: MemoryItem) -> dict[str, Any]:
    """The public shape of a MemoryItem (SPEC 2.2); hand-built: it is on the hot path."""
    return {
        "id": item.public_id,
        "type": item.tier,
        "content": item.content,
        "size_bytes": item.size_bytes,
        "metadata": {**metadata_of(item), "version": item.version},
        "score": item.score,
        "embedding_ref": item.embedding_ref or None,
        "status": item.status,
        "protected": item.protected,
        "created_at": _iso(item.created_at),
        "updated_at": _iso(item.updated_at),
        "last_seen_at": _iso(item.last_seen_at),
        "archived_at": _iso(item.archived_at),
        "access_count": item.access_count,
        "audit": {"created_by": item.created_by, "consent": item.consent},
    }


# --------------------------------------------------------------------- views


class MemoryCreateInput(StrictInput):
    type = serializers.ChoiceField(choices=Tier.choices)
    content = serializers.CharField(
        allow_blank=True, trim_whitespace=False, validators=[NonBlank(enforce=False)]
    )
    metadata = documented_json(MetadataInput, required=False)


class MemoryListFilters(PageQuery):
    type = serializers.ChoiceField(choices=Tier.choices, required=False)
    tags = serializers.CharField(required=False, help_text="comma-separated")
    tags_mode = serializers.ChoiceField(choices=["any", "all"], default="any")
    status = serializers.ChoiceField(
        choices=[*Status.values, "all"], default=Status.ACTIVE
    )
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    q = serializers.CharField(required=False, max_length=256)
    source = serializers.ChoiceField(choices=Source.choices, required=False)  # type: ignore[assignment]
    ordering = serializers.ChoiceField(
        choices=sorted(selectors.ORDERINGS), default="-created_at"
    )


IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "minLength": 1, "maxLength": 128},
    OpenApiParameter.HEADER,
    description="a retry with the same key and body replays the first answer",
)


class MemoryCollectionApi(APIView):
    pagination_class = PagePagination

    @extend_schema(
        request=MemoryCreateInput,
        responses={
            201: MemoryItemOutput,
            **error_responses(
                409, 413, 429, e409="Idempotency-Key used for another request"
            ),
        },
        parameters=[IDEMPOTENCY_KEY],
    )
    def post(self, request: Request) -> Response:
        data = parse(MemoryCreateInput, request.data)
        result = services.memory_create(
            ctx=context_from_request(request),
            user=current_user(request),
            tier=data["type"],
            content=data["content"],
            metadata=data.get("metadata"),
            idempotency_key=request.headers.get("Idempotency-Key"),
        )
        headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
        return Response(memory_out(result.item), status=201, headers=headers)

    @extend_schema(
        parameters=[MemoryListFilters], responses={200: MemoryItemOutput(many=True)}
    )
    def get(self, request: Request) -> Response:
        params = request.query_params.dict()
        if "tags" in request.query_params:
            params["tags"] = ",".join(request.query_params.getlist("tags"))
        data = parse(MemoryListFilters, params)
        tags = [t.strip() for t in data.get("tags", "").split(",") if t.strip()]
        filters = selectors.MemoryFilters(
            tier=data.get("type"),
            tags=tags or None,
            tags_mode=data["tags_mode"],
            status=data["status"],
            since=data.get("since"),
            until=data.get("until"),
            q=data.get("q"),
            source=data.get("source"),
            ordering=data["ordering"],
        )
        qs = selectors.memory_list(user=current_user(request), filters=filters)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response([memory_out(i) for i in page])


class MemoryUpdateInput(StrictInput):
    type = serializers.ChoiceField(choices=Tier.choices, required=False)
    content = serializers.CharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        validators=[NonBlank(enforce=False)],
    )
    metadata = documented_json(MetadataInput, required=False)


class MemoryDetailApi(APIView):
    @extend_schema(responses={200: MemoryItemOutput})
    def get(self, request: Request, memory_id: str) -> Response:
        item = selectors.memory_get(user=current_user(request), memory_id=memory_id)
        return Response(memory_out(item))

    @extend_schema(
        request=MemoryUpdateInput,
        responses={200: MemoryItemOutput, **error_responses(413, 429)},
    )
    def patch(self, request: Request, memory_id: str) -> Response:
        data = parse(MemoryUpdateInput, request.data)
        item = services.memory_update(
            ctx=context_from_request(request),
            user=current_user(request),
            memory_id=memory_id,
            content=data.get("content"),
            metadata=data.get("metadata"),
            tier=data.get("type"),
        )
        return Response(memory_out(item))

    @extend_schema(responses={204: None})
    def delete(self, request: Request, memory_id: str) -> Response:
        services.memory_delete(
            ctx=context_from_request(request),
            user=current_user(request),
            memory_id=memory_id,
        )
        return Response(status=204)


class MemoryLifecycleApi(APIView):
    """POST /v1/memory/{id}/protect|unprotect|archive|restore."""

    action_name = ""

    @extend_schema(
        request=None,
        responses={
            200: MemoryItemOutput,
            **error_responses(429, e429="restore: over quota"),
        },
    )
    def post(self, request: Request, memory_id: str) -> Response:
        item = services.memory_lifecycle(
            ctx=context_from_request(request),
            user=current_user(request),
            memory_id=memory_id,
            action=self.action_name,
        )
        return Response(memory_out(item))


class MemoryRevertInput(StrictInput):
    version = serializers.IntegerField(min_value=1, max_value=MAX_INT)


class MemoryRevertApi(APIView):
    """POST /v1/memory/{id}/revert {version}: roll back to an earlier state."""

    @extend_schema(
        request=MemoryRevertInput,
        responses={200: MemoryItemOutput, **error_responses(413, 429)},
    )
    def post(self, request: Request, memory_id: str) -> Response:
        data = parse(MemoryRevertInput, request.data)
        item = services.memory_revert(
            ctx=context_from_request(request),
            user=current_user(request),
            memory_id=memory_id,
            version=data["version"],
        )
        return Response(memory_out(item))


class MemoryHistoryApi(APIView):
    @extend_schema(responses={200: MemoryHistoryOutput})
    def get(self, request: Request, memory_id: str) -> Response:
        item, versions = selectors.memory_history(
            user=current_user(request), memory_id=memory_id
        )
        return Response(
            {
                "current": memory_out(item),
                "versions": MemoryVersionOutput(versions, many=True).data,
            }
        )


class MemoryBulkInput(StrictInput):
    action = serializers.ChoiceField(choices=services.BULK_ACTIONS)
    ids = serializers.ListField(
        child=serializers.CharField(), min_length=1, max_length=MAX_BULK_IDS
    )


class MemoryBulkApi(APIView):
    @extend_schema(
        request=MemoryBulkInput,
        responses={
            200: BulkOutput,
            **error_responses(
                404,
                429,
                e404="ids not yours: nothing changed",
                e429="restore: over quota",
            ),
        },
    )
    def post(self, request: Request) -> Response:
        data = parse(MemoryBulkInput, request.data)
        result = services.memory_bulk(
            ctx=context_from_request(request),
            user=current_user(request),
            action=data["action"],
            ids=data["ids"],
        )
        body: dict[str, Any] = {
            "action": result.action,
            "requested": len(result.items),
            "changed": result.changed,
        }
        if result.action == "export":
            body["items"] = [memory_out(i) for i in result.items]
        return Response(body)


class MemoryMetricsApi(APIView):
    @extend_schema(responses={200: MetricsOutput})
    def get(self, request: Request) -> Response:
        m = selectors.memory_metrics(user=current_user(request))
        return Response(
            {
                "tiers": {
                    t.tier: {
                        "quota_bytes": t.quota_bytes,
                        "hard_limit_bytes": t.hard_limit_bytes,
                        "used_bytes": t.used_bytes,
                        "override": t.override,
                        "active_items": t.active_items,
                        "archived_items": t.archived_items,
                    }
                    for t in m.tiers
                },
                "last_meditation": _iso(m.last_meditation),
                "embedding_enabled": m.embedding_enabled,
            }
        )


# ----------------------------------------------------------------- retrieval


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


# -------------------------------------------------------------- goals, meditation


class GoalInput(StrictInput):
    text = serializers.CharField(
        trim_whitespace=False, max_length=1000, validators=[NonBlank()]
    )
    tags = documented_json(tag_list(), required=False)


class GoalCollectionApi(APIView):
    @extend_schema(responses={200: GoalListOutput})
    def get(self, request: Request) -> Response:
        goals = selectors.goals_for(user=current_user(request))
        return Response({"items": GoalOutput(goals, many=True).data})

    @extend_schema(request=GoalInput, responses={201: GoalOutput})
    def post(self, request: Request) -> Response:
        data = parse(GoalInput, request.data)
        goal = services.goal_create(
            ctx=context_from_request(request),
            user=current_user(request),
            text=data["text"],
            tags=data.get("tags"),
        )
        return Response(GoalOutput(goal).data, status=201)


class GoalDetailApi(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, goal_id: int) -> Response:
        services.goal_delete(
            ctx=context_from_request(request),
            user=current_user(request),
            goal_id=goal_id,
        )
        return Response(status=204)


class MeditateInput(StrictInput):
    dry_run = serializers.BooleanField(default=False)


class MeditateApi(APIView):
    @extend_schema(request=MeditateInput, responses={202: MeditationRunOutput})
    def post(self, request: Request) -> Response:
        data = parse(MeditateInput, request.data)
        run = meditation.meditation_queue(
            user=current_user(request), dry_run=data["dry_run"]
        )
        return Response(MeditationRunOutput(run).data, status=202)


class ForecastFilters(PageQuery):
    as_of = serializers.DateTimeField(required=False)


class ForecastApi(APIView):
    """GET /v1/memory/forecast: what a run would do now, and why; changes nothing.

    Its `as_of` passed back (`?as_of=...&page=2`) gives the next page of the same
    forecast; `run_id` is null, as no run is kept.
    """

    @extend_schema(parameters=[ForecastFilters], responses={200: ForecastOutput})
    def get(self, request: Request) -> Response:
        data = parse(ForecastFilters, request.query_params.dict())
        forecast = meditation.meditation_forecast(
            user=current_user(request), as_of=data.get("as_of")
        )
        paginator = PagePagination()
        page = paginator.paginate_queryset(forecast.decisions, request, view=self)
        decisions = paginator.get_paginated_response(
            ScoreRecordOutput(page, many=True).data
        )
        return Response(
            {**MeditationRunOutput(forecast.run).data, "decisions": decisions.data}
        )


class MeditationListApi(APIView):
    pagination_class = PagePagination

    @extend_schema(responses={200: MeditationRunOutput(many=True)})
    def get(self, request: Request) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(
            selectors.meditation_runs_for(user=current_user(request)),
            request,
            view=self,
        )
        return paginator.get_paginated_response(
            MeditationRunOutput(page, many=True).data
        )


class MeditationDetailApi(APIView):
    @extend_schema(parameters=[PageQuery], responses={200: MeditationDetailOutput})
    def get(self, request: Request, run_id: int) -> Response:
        run = selectors.meditation_run_get(user=current_user(request), run_id=run_id)
        paginator = PagePagination()
        page = paginator.paginate_queryset(
            run.scores.order_by("score", "item_id"), request, view=self
        )
        scores = paginator.get_paginated_response(
            ScoreRecordOutput(page, many=True).data
        )
        return Response({**MeditationRunOutput(run).data, "scores": scores.data})
