"""GET /v1/audit/logs: the user's own audit events, newest first."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.models import AuditEvent
from audit.selectors import audit_events_for_user
from kimberly.api.pagination import PagePagination, PageQuery
from kimberly.api.serializers import parse
from kimberly.context import current_user


class AuditEventOutput(serializers.ModelSerializer[AuditEvent]):
    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "seq",
            "action",
            "actor_type",
            "actor_id",
            "target_type",
            "target_id",
            "request_id",
            "ip",
            "user_agent",
            "details",
            "created_at",
            "prev_hash",
            "hash",
        ]


class AuditLogFilters(PageQuery):
    action = serializers.CharField(required=False, max_length=64)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)


class AuditLogListApi(APIView):
    pagination_class = PagePagination

    @extend_schema(
        parameters=[AuditLogFilters], responses={200: AuditEventOutput(many=True)}
    )
    def get(self, request: Request) -> Response:
        filters = parse(AuditLogFilters, request.query_params.dict())
        filters.pop("page", None), filters.pop("per_page", None)
        qs = audit_events_for_user(user_id=current_user(request).pk, **filters)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(AuditEventOutput(page, many=True).data)
