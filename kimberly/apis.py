"""Project-level endpoints: liveness and readiness."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from kimberly import health
from kimberly.api.exceptions import error_body
from kimberly.api.schema import error_responses

CHECK = inline_serializer(
    "ReadinessCheck",
    {
        "ok": serializers.BooleanField(),
        "ms": serializers.FloatField(),
        "error": serializers.CharField(required=False),
    },
)


class HealthApi(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    @extend_schema(
        auth=[],
        responses=inline_serializer(
            "Health",
            {
                "status": serializers.CharField(),
                "uptime_seconds": serializers.FloatField(),
            },
        ),
    )
    def get(self, request: Request) -> Response:
        return Response({"status": "ok", "uptime_seconds": health.uptime_seconds()})


class ReadyApi(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    @extend_schema(
        auth=[],
        responses={
            200: inline_serializer(
                "Ready",
                {
                    "status": serializers.CharField(),
                    "uptime_seconds": serializers.FloatField(),
                    "checks": serializers.DictField(child=CHECK),
                },
            ),
            **error_responses(503, e503="not_ready: details.failed names what is down"),
        },
    )
    def get(self, request: Request) -> Response:
        """200 while PostgreSQL serves ("degraded" names optional stores that are
        down); 503 only when a required check fails."""
        results = health.readiness()
        checks = {
            r.name: {"ok": r.ok, "ms": r.ms, **({"error": r.error} if r.error else {})}
            for r in results
        }
        failed = [r.name for r in results if not r.ok and r.required]
        degraded = [r.name for r in results if not r.ok and not r.required]
        if failed:
            body = error_body(
                "not_ready",
                f"Unavailable: {', '.join(failed)}.",
                503,
                {"failed": failed, "degraded": degraded, "checks": checks},
            )
            return Response({**body, "status": "unavailable"}, status=503)
        return Response(
            {
                "status": "degraded" if degraded else "ok",
                "degraded": degraded,
                "uptime_seconds": health.uptime_seconds(),
                "checks": checks,
            }
        )
