"""Retention policies over HTTP: GET and PUT /v1/compliance/retention-policies."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from kimberly.api.schema import error_responses
from kimberly.api.serializers import StrictInput, parse
from kimberly.context import context_from_request, current_user
from privacy.retention import policies
from privacy.retention.models import DataType


class PolicyOutput(serializers.Serializer[Any]):
    data_type = serializers.ChoiceField(choices=DataType.choices)
    description = serializers.CharField()
    system_days = serializers.IntegerField(help_text="what the system keeps")
    user_days = serializers.IntegerField(
        allow_null=True, help_text="your own value (only shorter); null: none"
    )
    effective_days = serializers.IntegerField(help_text="the smaller of the two")


def _days_field() -> serializers.IntegerField:
    return serializers.IntegerField(
        min_value=1, max_value=policies.MAX_DAYS, allow_null=True, required=False
    )


class PoliciesInput(StrictInput):
    """One optional field per data type: days, or null to drop your own value."""

    def get_fields(self) -> dict[str, serializers.Field]:
        return {data_type: _days_field() for data_type in DataType.values}


class PutInput(StrictInput):
    scope = serializers.ChoiceField(
        choices=policies.SCOPES,
        default="user",
        help_text="system: the defaults for everyone (administrators only)",
    )
    policies = PoliciesInput()


def _out(scope: str, items: list[policies.Policy]) -> dict[str, Any]:
    return {
        "scope": scope,
        "items": [
            {
                "data_type": p.data_type,
                "description": p.description,
                "system_days": p.system_days,
                "user_days": p.user_days,
                "effective_days": p.effective_days,
            }
            for p in items
        ],
    }


PoliciesOutput = inline_serializer(
    "RetentionPolicies",
    {
        "scope": serializers.ChoiceField(choices=policies.SCOPES),
        "items": PolicyOutput(many=True),
    },
)


class RetentionPoliciesApi(APIView):
    @extend_schema(responses={200: PoliciesOutput})
    def get(self, request: Request) -> Response:
        """How long each kind of data is kept for you (and by the system)."""
        user = current_user(request)
        return Response(_out("user", policies.policies_for(user.pk)))

    @extend_schema(
        request=PutInput,
        responses={
            200: PoliciesOutput,
            **error_responses(
                400,
                403,
                e400="retention_too_long: your value may only be shorter than the "
                "system's; retention_too_short: audit_events and exports have a "
                "floor; invalid_retention_days",
                e403="admin_only: scope system needs an administrator",
            ),
        },
    )
    def put(self, request: Request) -> Response:
        """Set your own (shorter) values, or with scope system the defaults;
        a data type left out is unchanged, null drops the value. All or nothing."""
        data = parse(PutInput, request.data)
        items = policies.policies_set(
            ctx=context_from_request(request),
            user=current_user(request),
            changes=dict(data["policies"]),
            system=data["scope"] == "system",
        )
        return Response(_out(data["scope"], items))
