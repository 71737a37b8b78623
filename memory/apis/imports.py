"""Imports: POST a file (multipart) or JSON; follow a job; list the user's imports."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from kimberly.api.pagination import PagePagination
from kimberly.api.parsers import BoundedJSONParser
from kimberly.api.schema import error_responses
from kimberly.api.serializers import QueryInput, StrictInput, parse
from kimberly.context import context_from_request, current_user
from kimberly.middleware import upload_limit
from memory.constants import Tier
from memory.imports import selectors
from memory.imports.models import MemoryImport
from memory.imports.services import (
    check_size,
    import_body_check,
    memory_import_start,
)

FORMAT_HELP = (
    "kimberly (our transcript, JSON lines), chatgpt (conversations.json of a "
    "ChatGPT export) or json (a list of {content, created_at, tier?, metadata?, "
    "external_id?}); sniffed from the content when absent"
)
TIER_HELP = "tier of the imported memories (a json record's own tier wins)"


class ImportFormInput(QueryInput):
    """multipart/form-data: the file, and text fields."""

    file = serializers.FileField(help_text="the export; at most IMPORT_MAX_BYTES")
    format = serializers.ChoiceField(
        choices=MemoryImport.Format.choices, required=False, help_text=FORMAT_HELP
    )
    tier = serializers.ChoiceField(
        choices=Tier.choices, default=Tier.LONG_TERM, help_text=TIER_HELP
    )


class ImportJsonInput(StrictInput):
    """application/json, for small imports (bounded by DATA_UPLOAD_MAX_MEMORY_SIZE)."""

    format = serializers.ChoiceField(
        choices=MemoryImport.Format.choices, required=False, help_text=FORMAT_HELP
    )
    tier = serializers.ChoiceField(
        choices=Tier.choices, default=Tier.LONG_TERM, help_text=TIER_HELP
    )
    data = serializers.JSONField(  # type: ignore[assignment]
        help_text="the file's parsed JSON (a transcript: a list of its lines, "
        "or its text)"
    )


class RefusalSchema(serializers.Serializer[Any]):
    record = serializers.IntegerField(help_text="position in the file")
    external_id = serializers.CharField()
    reason = serializers.CharField(help_text="quota_exceeded, content_too_large, ...")


class ImportOutput(serializers.ModelSerializer[MemoryImport]):
    id = serializers.CharField(source="public_id")
    refusals = RefusalSchema(many=True, help_text="the first 100 refused records")
    skipped = serializers.DictField(
        child=serializers.IntegerField(),
        help_text="entries that are not memories, by reason (assistant_message, ...)",
    )

    class Meta:
        model = MemoryImport
        fields = [
            "id",
            "status",
            "format",
            "tier",
            "total",
            "processed",
            "imported",
            "skipped_duplicate",
            "refused",
            "refusals",
            "skipped",
            "created_at",
            "started_at",
            "finished_at",
            "error",
        ]


@upload_limit("IMPORT_MAX_BYTES")
class MemoryImportApi(APIView):
    parser_classes = [MultiPartParser, BoundedJSONParser]

    @extend_schema(
        request={
            "multipart/form-data": ImportFormInput,
            "application/json": ImportJsonInput,
        },
        responses={
            201: OpenApiResponse(ImportOutput, description="imported in the request"),
            202: OpenApiResponse(ImportOutput, description="queued as a job"),
            **error_responses(
                400,
                413,
                429,
                503,
                e400="Malformed file: invalid_import names the first bad record "
                "({record, line?, field, reason}); nothing was stored.",
                e413="The file is over IMPORT_MAX_BYTES (payload_too_large).",
                e429="This import would pass a tier's hard limit; nothing was stored.",
                e503="The file store is down (a job's file could not be kept).",
            ),
        },
        examples=[
            OpenApiExample(
                "JSON list",
                request_only=True,
                media_type="application/json",
                value={
                    "format": "json",
                    "data": [
                        {
                            "content": "I moved to Lisbon",
                            "created_at": "2021-05-01T09:30:00Z",
                        }
                    ],
                },
            )
        ],
    )
    def post(self, request: Request) -> Response:
        import_body_check(request.META.get("CONTENT_LENGTH"))
        kwargs: dict[str, Any]
        if (request.content_type or "").startswith("multipart/"):
            data = parse(ImportFormInput, request.data)
            check_size(data["file"].size)
            kwargs = {"raw": data["file"].read()}
        else:
            data = parse(ImportJsonInput, request.data)
            kwargs = {"data": data["data"]}
        imp = memory_import_start(
            ctx=context_from_request(request),
            user=current_user(request),
            tier=data["tier"],
            fmt=data.get("format"),
            **kwargs,
        )
        status = 202 if imp.status == MemoryImport.State.QUEUED else 201
        return Response(ImportOutput(imp).data, status=status)


class MemoryImportListApi(APIView):
    pagination_class = PagePagination

    @extend_schema(responses={200: ImportOutput(many=True)})
    def get(self, request: Request) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(
            selectors.memory_imports_for(user=current_user(request)), request, view=self
        )
        return paginator.get_paginated_response(ImportOutput(page, many=True).data)


class MemoryImportDetailApi(APIView):
    @extend_schema(responses={200: ImportOutput})
    def get(self, request: Request, import_id: str) -> Response:
        imp = selectors.memory_import_get(
            user=current_user(request), import_id=import_id
        )
        return Response(ImportOutput(imp).data)
