"""Lifecycle actions, history and revert, and bulk actions on memories."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from kimberly.api.parsers import MAX_INT
from kimberly.api.schema import error_responses
from kimberly.api.serializers import StrictInput, parse
from kimberly.context import context_from_request, current_user
from memory import selectors, services
from memory.apis.schemas import (
    BulkOutput,
    MemoryHistoryOutput,
    MemoryItemOutput,
    MemoryVersionOutput,
)
from memory.constants import MAX_BULK_IDS
from memory.outputs import bulk_out, memory_out


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
        return Response(bulk_out(result))
