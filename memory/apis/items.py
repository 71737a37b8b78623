"""Memories: create, list, read, edit, delete, and the user's usage."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from kimberly.api.pagination import PagePagination, PageQuery
from kimberly.api.schema import error_responses
from kimberly.api.serializers import (
    NonBlank,
    StrictInput,
    documented_json,
    iso_time,
    parse,
)
from kimberly.context import context_from_request, current_user
from memory import selectors, services
from memory.apis.schemas import (
    MemoryItemOutput,
    MetadataInput,
    MetricsOutput,
)
from memory.constants import Source, Status, Tier
from memory.outputs import memory_out


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
    embedded = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="true: searchable by meaning; false: still waiting for its vector",
    )
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
            embedded=data["embedded"],
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
                "last_meditation": iso_time(m.last_meditation),
                "embedding_enabled": m.embedding_enabled,
                "embedding_pending": m.embedding_pending,
            }
        )
