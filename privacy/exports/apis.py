"""GDPR export: ask for one (POST /v1/user/export), follow it and download it
(GET /v1/user/export/{id}), list them (GET /v1/user/exports)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from kimberly.api.pagination import PagePagination
from kimberly.api.schema import error_responses
from kimberly.api.serializers import StrictInput, parse
from kimberly.context import context_from_request, current_user
from privacy.exports import selectors, services
from privacy.exports.models import DataExport


class ExportInput(StrictInput):
    format = serializers.ChoiceField(
        choices=DataExport.Format.choices,
        default=DataExport.Format.JSON,
        help_text="json: each part a JSON array; csv: each part a CSV table "
        "(nested values as JSON text); see privacy/exports/export.schema.json",
    )


class ProgressOutput(serializers.Serializer[Any]):
    parts_done = serializers.IntegerField()
    parts_total = serializers.IntegerField()


class ExportOutput(serializers.Serializer[Any]):
    export_id = serializers.CharField(source="public_id")
    status = serializers.ChoiceField(choices=DataExport.State.choices)
    format = serializers.ChoiceField(choices=DataExport.Format.choices)
    progress = serializers.SerializerMethodField()
    size_bytes = serializers.IntegerField(allow_null=True, help_text="of the zip")
    counts = serializers.DictField(
        child=serializers.IntegerField(), help_text="records per part, when done"
    )
    download_url = serializers.SerializerMethodField(
        help_text="a short-lived signed link to the zip (EXPORT_URL_EXPIRE_SECONDS); "
        "only while status is succeeded"
    )
    error = serializers.CharField(help_text="why it failed (status failed)")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(
        allow_null=True, help_text="when the zip is deleted (EXPORT_KEEP_HOURS)"
    )

    @extend_schema_field(ProgressOutput)
    def get_progress(self, export: DataExport) -> dict[str, int]:
        return {"parts_done": export.parts_done, "parts_total": export.parts_total}

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_download_url(self, export: DataExport) -> str | None:
        return services.export_download_url(export)


class ExportApi(APIView):
    @extend_schema(
        request=ExportInput,
        responses={
            202: OpenApiResponse(ExportOutput, description="queued"),
            **error_responses(
                400,
                429,
                e429="export_cooldown: an export (that did not fail) was asked for "
                "within EXPORT_COOLDOWN_HOURS; Retry-After says when the next may be.",
            ),
        },
    )
    def post(self, request: Request) -> Response:
        data = parse(ExportInput, request.data)
        export = services.export_request(
            ctx=context_from_request(request),
            user=current_user(request),
            fmt=data["format"],
        )
        return Response(ExportOutput(export).data, status=202)


class ExportDetailApi(APIView):
    @extend_schema(responses={200: ExportOutput, **error_responses(404)})
    def get(self, request: Request, export_id: str) -> Response:
        export = selectors.export_get(user=current_user(request), export_id=export_id)
        return Response(ExportOutput(export).data)


class ExportListApi(APIView):
    pagination_class = PagePagination

    @extend_schema(responses={200: ExportOutput(many=True)})
    def get(self, request: Request) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(
            selectors.exports_for(user=current_user(request)), request, view=self
        )
        return paginator.get_paginated_response(ExportOutput(page, many=True).data)
