"""HTTP API for memories: authenticate → parse → one service/selector → serialize."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from kimberly.api.pagination import PagePagination
from kimberly.api.serializers import StrictInput, parse
from kimberly.context import context_from_request, current_user
from memory import indexing, meditation, retrieval, selectors, services
from memory.constants import (
    FEEDBACK_VALUES,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    Scope,
    Source,
    Status,
    Tier,
)
from memory.models import Goal, MeditationRun, MemoryItem, MemoryVersion, ScoreRecord


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def memory_out(item: MemoryItem) -> dict[str, Any]:
    """The public shape of a MemoryItem (SPEC 2.2); hand-built: it is on the hot path."""
    return {
        "id": item.public_id,
        "type": item.tier,
        "content": item.content,
        "size_bytes": item.size_bytes,
        "metadata": {**services.metadata_of(item), "version": item.version},
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


# ------------------------------------------------------------- schema shapes


class MetadataSchema(serializers.Serializer[Any]):
    tags = serializers.ListField(
        child=serializers.CharField(max_length=MAX_TAG_LENGTH), max_length=MAX_TAGS
    )
    source = serializers.ChoiceField(choices=Source.choices)  # type: ignore[assignment]
    channels = serializers.ListField(
        child=serializers.CharField(max_length=MAX_TAG_LENGTH)
    )
    sensitive = serializers.BooleanField()
    scope = serializers.ChoiceField(choices=Scope.choices)
    user_feedback = serializers.ChoiceField(choices=FEEDBACK_VALUES, allow_null=True)
    version = serializers.IntegerField(read_only=True)


class AuditSchema(serializers.Serializer[Any]):
    created_by = serializers.CharField()
    consent = serializers.BooleanField()


class MemoryItemOutput(serializers.Serializer[MemoryItem]):
    id = serializers.CharField()
    type = serializers.ChoiceField(choices=Tier.choices)
    content = serializers.CharField()
    size_bytes = serializers.IntegerField()
    metadata = MetadataSchema()
    score = serializers.FloatField()
    embedding_ref = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=Status.choices)
    protected = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    last_seen_at = serializers.DateTimeField(allow_null=True)
    archived_at = serializers.DateTimeField(allow_null=True)
    access_count = serializers.IntegerField()
    audit = AuditSchema()

    def to_representation(self, instance: MemoryItem) -> dict[str, Any]:
        return memory_out(instance)


# --------------------------------------------------------------------- views


class MemoryCreateInput(StrictInput):
    type = serializers.CharField()
    content = serializers.CharField(allow_blank=True, trim_whitespace=False)
    metadata = serializers.JSONField(required=False, help_text="see MetadataSchema")


class MemoryListFilters(StrictInput):
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
    embedded = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="true: searchable by meaning; false: still waiting for its vector",
    )
    ordering = serializers.ChoiceField(
        choices=sorted(selectors.ORDERINGS), default="-created_at"
    )
    page = serializers.IntegerField(required=False, min_value=1)
    per_page = serializers.IntegerField(required=False, min_value=1, max_value=100)


class MemoryCollectionApi(APIView):
    @extend_schema(
        request=MemoryCreateInput,
        responses={201: MemoryItemOutput},
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER)],
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
            embedded=data["embedded"],
            ordering=data["ordering"],
        )
        qs = selectors.memory_list(user=current_user(request), filters=filters)
        paginator = PagePagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response([memory_out(i) for i in page])


class MemoryUpdateInput(StrictInput):
    type = serializers.CharField(required=False)
    content = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False
    )
    metadata = serializers.JSONField(required=False)


class MemoryDetailApi(APIView):
    @extend_schema(responses={200: MemoryItemOutput})
    def get(self, request: Request, memory_id: str) -> Response:
        item = selectors.memory_get(user=current_user(request), memory_id=memory_id)
        return Response(memory_out(item))

    @extend_schema(request=MemoryUpdateInput, responses={200: MemoryItemOutput})
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

    @extend_schema(request=None, responses={200: MemoryItemOutput})
    def post(self, request: Request, memory_id: str) -> Response:
        item = services.memory_lifecycle(
            ctx=context_from_request(request),
            user=current_user(request),
            memory_id=memory_id,
            action=self.action_name,
        )
        return Response(memory_out(item))


class MemoryRevertInput(StrictInput):
    version = serializers.IntegerField(min_value=1)


class MemoryRevertApi(APIView):
    """POST /v1/memory/{id}/revert {version}: roll back to an earlier state."""

    @extend_schema(request=MemoryRevertInput, responses={200: MemoryItemOutput})
    def post(self, request: Request, memory_id: str) -> Response:
        data = parse(MemoryRevertInput, request.data)
        item = services.memory_revert(
            ctx=context_from_request(request),
            user=current_user(request),
            memory_id=memory_id,
            version=data["version"],
        )
        return Response(memory_out(item))


class MemoryVersionOutput(serializers.ModelSerializer[MemoryVersion]):
    class Meta:
        model = MemoryVersion
        fields = [
            "version",
            "action",
            "actor_type",
            "actor_id",
            "changed_at",
            "tier",
            "status",
            "protected",
            "content",
            "metadata",
        ]


class MemoryHistoryApi(APIView):
    @extend_schema(responses={200: MemoryVersionOutput(many=True)})
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
    ids = serializers.ListField(child=serializers.CharField(), allow_empty=False)


class MemoryBulkApi(APIView):
    @extend_schema(request=MemoryBulkInput)
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
                "embedding_pending": m.embedding_pending,
            }
        )


# ----------------------------------------------------------------- retrieval


class QueryFiltersInput(StrictInput):
    tags = serializers.ListField(
        child=serializers.CharField(max_length=MAX_TAG_LENGTH),
        required=False,
        max_length=MAX_TAGS,
    )
    tags_mode = serializers.ChoiceField(choices=["any", "all"], default="any")
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    source = serializers.CharField(required=False)  # type: ignore[assignment]
    include_sensitive = serializers.BooleanField(default=False)


class MemoryQueryInput(StrictInput):
    query = serializers.CharField(allow_blank=True, trim_whitespace=False)
    type = serializers.CharField(default="any")
    top_k = serializers.IntegerField(default=5)
    filters = QueryFiltersInput(required=False)
    explain = serializers.BooleanField(default=False)


class RelevanceSchema(serializers.Serializer[Any]):
    semantic = serializers.FloatField(allow_null=True)
    lexical = serializers.FloatField(allow_null=True)
    score = serializers.FloatField()
    freshness = serializers.FloatField()
    final = serializers.FloatField()


class QueryHitSchema(serializers.Serializer[Any]):
    item = MemoryItemOutput()
    relevance = RelevanceSchema()
    why = serializers.CharField()


class MemoryQueryOutput(serializers.Serializer[Any]):
    results = QueryHitSchema(many=True)


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
    embeddings = serializers.JSONField()


class MemoryEmbedApi(APIView):
    @extend_schema(request=MemoryEmbedInput)
    def post(self, request: Request) -> Response:
        data = parse(MemoryEmbedInput, request.data)
        counts = indexing.memory_embed_user_vectors(
            ctx=context_from_request(request),
            user=current_user(request),
            rows=data["embeddings"],
        )
        return Response(counts)


# -------------------------------------------------------------- goals, meditation


class GoalOutput(serializers.ModelSerializer[Goal]):
    embedded = serializers.SerializerMethodField()

    class Meta:
        model = Goal
        fields = ["id", "text", "tags", "embedded", "created_at"]

    def get_embedded(self, goal: Goal) -> bool:
        return goal.vector is not None


class GoalInput(StrictInput):
    text = serializers.CharField(trim_whitespace=False, allow_blank=True)
    tags = serializers.JSONField(required=False)


class GoalCollectionApi(APIView):
    @extend_schema(responses={200: GoalOutput(many=True)})
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


class MeditationRunOutput(serializers.ModelSerializer[MeditationRun]):
    run_id = serializers.IntegerField(source="pk")

    class Meta:
        model = MeditationRun
        fields = [
            "run_id",
            "status",
            "dry_run",
            "scoring_version",
            "weights",
            "as_of",
            "started_at",
            "finished_at",
            "duration_ms",
            "processed",
            "promoted",
            "expired",
            "archived",
            "purged",
            "deferred",
            "error",
        ]


class ScoreRecordOutput(serializers.ModelSerializer[ScoreRecord]):
    memory_id = serializers.SerializerMethodField()

    class Meta:
        model = ScoreRecord
        fields = [
            "memory_id",
            "tier",
            "decision",
            "reason",
            "score",
            "previous_score",
            "relevance_to_goals",
            "emotional_weight",
            "predictive_value",
            "recency_freq",
        ]

    def get_memory_id(self, record: ScoreRecord) -> str:
        return f"mem_{record.item_id}"


class MeditateInput(StrictInput):
    dry_run = serializers.BooleanField(default=False)


class MeditateApi(APIView):
    @extend_schema(request=MeditateInput, responses={202: MeditationRunOutput})
    def post(self, request: Request) -> Response:
        data = parse(MeditateInput, request.data or {})
        run = meditation.meditation_queue(
            user=current_user(request), dry_run=data["dry_run"]
        )
        return Response(MeditationRunOutput(run).data, status=202)


class ForecastApi(APIView):
    """GET /v1/memory/forecast: what the next run would do, and why (a dry run)."""

    @extend_schema(responses={200: MeditationRunOutput})
    def get(self, request: Request) -> Response:
        user = current_user(request)
        run = meditation.meditation_run(
            ctx=context_from_request(request), user=user, dry_run=True
        )
        paginator = PagePagination()
        page = paginator.paginate_queryset(
            run.scores.exclude(decision="keep").order_by(
                "decision", "score", "item_id"
            ),
            request,
            view=self,
        )
        decisions = paginator.get_paginated_response(
            ScoreRecordOutput(page, many=True).data
        )
        return Response({**MeditationRunOutput(run).data, "decisions": decisions.data})


class MeditationListApi(APIView):
    @extend_schema(responses={200: MeditationRunOutput(many=True)})
    def get(self, request: Request) -> Response:
        paginator = PagePagination()
        page = paginator.paginate_queryset(
            selectors.meditation_runs_for(user=current_user(request)),
            request,
            view=self,
        )
        return paginator.get_paginated_response(
            MeditationRunOutput(page, many=True).data
        )


class MeditationDetailApi(APIView):
    @extend_schema(responses={200: MeditationRunOutput})
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
