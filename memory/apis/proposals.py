"""Proposed memories (accept or reject) and where a memory was read (accesses)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from kimberly.api.pagination import PagePagination, PageQuery
from kimberly.api.schema import error_responses
from kimberly.api.serializers import iso_time, parse
from kimberly.context import context_from_request, current_user
from memory import selectors
from memory.constants import ID_PREFIX, ProposalStatus
from memory.models import MemoryProposal, RetrievalRecord
from memory.services.proposals import proposal_decide


class ProposalOutput(serializers.Serializer[Any]):
    id = serializers.CharField(help_text="prop_<uuid>")
    content = serializers.CharField()
    type = serializers.ChoiceField(choices=["short-term", "long-term", "permanent"])
    source = serializers.CharField()  # type: ignore[assignment]
    origin = serializers.CharField(help_text="msg_<uuid> of the reply it followed")
    status = serializers.ChoiceField(choices=ProposalStatus.choices)
    memory_id = serializers.CharField(allow_null=True, help_text="set once accepted")
    created_at = serializers.DateTimeField()
    decided_at = serializers.DateTimeField(allow_null=True)


def proposal_out(p: MemoryProposal) -> dict[str, Any]:
    return {
        "id": p.public_id,
        "content": p.content,
        "type": p.tier,
        "source": p.source,
        "origin": p.origin,
        "status": p.status,
        "memory_id": f"{ID_PREFIX}{p.memory_id}" if p.memory_id else None,
        "created_at": iso_time(p.created_at),
        "decided_at": iso_time(p.decided_at),
    }


class ProposalFilters(PageQuery):
    status = serializers.ChoiceField(choices=ProposalStatus.choices, required=False)


class ProposalListApi(APIView):
    """GET /v1/memory/proposals: what Kimberly offers to remember, newest first."""

    pagination_class = PagePagination

    @extend_schema(
        parameters=[ProposalFilters], responses={200: ProposalOutput(many=True)}
    )
    def get(self, request: Request) -> Response:
        filters = parse(ProposalFilters, request.query_params.dict())
        qs = selectors.proposals_for(
            user=current_user(request), status=filters.get("status")
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response([proposal_out(p) for p in page])


class ProposalDecideApi(APIView):
    """POST /v1/memory/proposals/{id}/accept|reject."""

    accept = True

    @extend_schema(
        request=None,
        responses={
            200: ProposalOutput,
            **error_responses(
                404, 409, 429, e409="already decided", e429="accept: over quota"
            ),
        },
    )
    def post(self, request: Request, proposal_id: str) -> Response:
        proposal = proposal_decide(
            ctx=context_from_request(request),
            user=current_user(request),
            proposal_id=proposal_id,
            accept=self.accept,
        )
        return Response(proposal_out(proposal))


class AccessOutput(serializers.Serializer[Any]):
    at = serializers.DateTimeField()
    kind = serializers.ChoiceField(choices=["query", "chat", "agent"])
    ref = serializers.CharField(
        help_text="query: the request id; chat: the reply msg_<uuid>; agent: the task"
    )
    rank = serializers.IntegerField()
    final = serializers.FloatField()


def access_out(r: RetrievalRecord) -> dict[str, Any]:
    return {
        "at": iso_time(r.created_at),
        "kind": r.kind,
        "ref": r.request_id,
        "rank": r.rank,
        "final": r.final,
    }


class MemoryAccessesApi(APIView):
    """GET /v1/memory/{id}/accesses: when and where this memory was read."""

    pagination_class = PagePagination

    @extend_schema(
        parameters=[PageQuery],
        responses={200: AccessOutput(many=True), **error_responses(404)},
    )
    def get(self, request: Request, memory_id: str) -> Response:
        parse(PageQuery, request.query_params.dict())
        qs = selectors.memory_accesses(user=current_user(request), memory_id=memory_id)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response([access_out(r) for r in page])
