"""Pagination: page, per_page (max 100) → {items, page, per_page, total}."""

from __future__ import annotations

from typing import Any

from django.core.paginator import EmptyPage, Paginator
from drf_spectacular.utils import inline_serializer
from rest_framework import serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response

from kimberly.api.errors import ValidationFailed
from kimberly.api.parsers import MAX_INT
from kimberly.api.serializers import QueryInput

MAX_PER_PAGE = 100


class PageQuery(QueryInput):
    """The page and per_page query parameters (a base for list filters)."""

    page = serializers.IntegerField(required=False, min_value=1, max_value=MAX_INT)
    per_page = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_PER_PAGE
    )


class PagePagination(PageNumberPagination):
    page_size = 20
    page_size_query_param = "per_page"
    max_page_size = MAX_PER_PAGE

    def paginate_queryset(
        self, queryset: Any, request: Request, view: Any = None
    ) -> list[Any]:
        page_number = _positive_int(request.query_params.get("page", "1"), "page")
        per_page = _positive_int(
            request.query_params.get("per_page", str(self.page_size)), "per_page"
        )
        if per_page > self.max_page_size:
            raise ValidationFailed(
                f"per_page must be at most {self.max_page_size}.",
                details={"per_page": per_page, "max": self.max_page_size},
            )
        paginator = Paginator(queryset, per_page)
        self.page_number_value = page_number
        self.per_page = per_page
        self.total = paginator.count
        try:
            return list(paginator.page(page_number).object_list)
        except EmptyPage:
            return []

    def get_paginated_response(self, data: Any) -> Response:
        return Response(
            {
                "items": data,
                "page": self.page_number_value,
                "per_page": self.per_page,
                "total": self.total,
            }
        )

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            _query_parameter(name, field) for name, field in PageQuery().fields.items()
        ]

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["items", "page", "per_page", "total"],
            "properties": {
                "items": schema,
                "page": {"type": "integer"},
                "per_page": {"type": "integer"},
                "total": {"type": "integer"},
            },
        }


def _query_parameter(name: str, field: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {
            "type": "integer",
            "minimum": field.min_value,
            "maximum": field.max_value,
        },
    }


def _positive_int(raw: str, name: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_INT:
        raise ValidationFailed(
            f"{name} must be an integer from 1 to 2^63-1.", details={name: raw[:32]}
        )
    return value


def page_serializer(
    child: type[serializers.Serializer[Any]], name: str
) -> serializers.Serializer[Any]:
    """The shape of a page nested in a response (documentation only)."""
    return inline_serializer(
        name,
        {
            "items": child(many=True),
            "page": serializers.IntegerField(),
            "per_page": serializers.IntegerField(),
            "total": serializers.IntegerField(),
        },
    )
