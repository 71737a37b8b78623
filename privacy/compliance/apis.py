"""GET /v1/compliance/check: the named compliance checks, for you or (for an
administrator) for the whole system."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from kimberly.api.serializers import iso_time
from kimberly.context import current_user
from privacy.compliance.checks import compliance_check
from privacy.retention import policies


class CheckOutput(serializers.Serializer[Any]):
    name = serializers.CharField()
    ok = serializers.BooleanField()
    details = serializers.DictField(help_text="what was found; never content")


class ComplianceCheckApi(APIView):
    @extend_schema(
        responses={
            200: inline_serializer(
                "ComplianceReport",
                {
                    "scope": serializers.ChoiceField(choices=policies.SCOPES),
                    "ok": serializers.BooleanField(help_text="every check passed"),
                    "checked_at": serializers.DateTimeField(),
                    "checks": CheckOutput(many=True),
                },
            )
        }
    )
    def get(self, request: Request) -> Response:
        """encryption_configured, sensitive_items_have_consent,
        retention_enforced, audit_chains_intact, no_erasure_overdue.
        Administrators (superusers) get the system-wide view; everyone else,
        support staff too, their own."""
        user = current_user(request)
        system = bool(user.is_superuser)
        checks = compliance_check(user_id=None if system else user.pk)
        body: dict[str, Any] = {
            "scope": "system" if system else "user",
            "ok": all(c.ok for c in checks),
            "checked_at": iso_time(timezone.now()),
            "checks": [
                {"name": c.name, "ok": c.ok, "details": c.details} for c in checks
            ],
        }
        return Response(body)
