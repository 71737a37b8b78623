"""The consent ledger over HTTP: GET /v1/user/consents, POST {purpose}, DELETE."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from kimberly.api.schema import error_responses
from kimberly.api.serializers import StrictInput, iso_time, parse
from kimberly.context import context_from_request, current_user
from users import consents
from users.models import Consent

PURPOSE_HELP = (
    "sensitive_memory: keep sensitive memories; model_context: send them to a"
    " model runner (chat); agent_access: let agents read them; telemetry"
)


class ConsentEventSchema(serializers.Serializer[Any]):
    granted_at = serializers.DateTimeField()
    withdrawn_at = serializers.DateTimeField(allow_null=True)
    source = serializers.CharField()  # type: ignore[assignment]
    withdrawn_source = serializers.CharField()


class ConsentOutput(serializers.Serializer[Any]):
    purpose = serializers.ChoiceField(choices=Consent.Purpose.choices)
    granted = serializers.BooleanField()
    granted_at = serializers.DateTimeField(allow_null=True)
    history = ConsentEventSchema(many=True, help_text="newest first")


def consent_out(state: consents.ConsentState) -> dict[str, Any]:
    return {
        "purpose": state.purpose,
        "granted": state.granted,
        "granted_at": iso_time(state.granted_at),
        "history": [
            {
                "granted_at": iso_time(c.granted_at),
                "withdrawn_at": iso_time(c.withdrawn_at),
                "source": c.source,
                "withdrawn_source": c.withdrawn_source,
            }
            for c in state.history
        ],
    }


def _one(request: Request, purpose: str) -> dict[str, Any]:
    state = next(
        s for s in consents.consents_of(current_user(request)) if s.purpose == purpose
    )
    return consent_out(state)


class ConsentListApi(APIView):
    class GrantInput(StrictInput):
        purpose = serializers.ChoiceField(
            choices=Consent.Purpose.choices, help_text=PURPOSE_HELP
        )

    @extend_schema(
        responses={
            200: inline_serializer("ConsentList", {"items": ConsentOutput(many=True)})
        }
    )
    def get(self, request: Request) -> Response:
        states = consents.consents_of(current_user(request))
        return Response({"items": [consent_out(s) for s in states]})

    @extend_schema(
        request=GrantInput,
        responses={
            201: ConsentOutput,
            200: ConsentOutput,
            **error_responses(400, e400="not a purpose"),
        },
    )
    def post(self, request: Request) -> Response:
        """Grant consent for a purpose: 201, or 200 when it stands already."""
        data = parse(self.GrantInput, request.data)
        new = consents.consent_grant(
            ctx=context_from_request(request),
            user=current_user(request),
            purpose=data["purpose"],
            source="api",
        )
        return Response(_one(request, data["purpose"]), status=201 if new else 200)


class ConsentDetailApi(APIView):
    @extend_schema(
        request=None,
        responses={200: ConsentOutput, **error_responses(404, e404="unknown_purpose")},
    )
    def delete(self, request: Request, purpose: str) -> Response:
        """Withdraw consent for a purpose (200 also when none stood). Withdrawing
        sensitive_memory hides your sensitive memories at once and deletes them
        after CONSENT_PURGE_GRACE_HOURS unless you grant it again before."""
        consents.consent_withdraw(
            ctx=context_from_request(request),
            user=current_user(request),
            purpose=consents.purposes(purpose),
            source="api",
        )
        return Response(_one(request, purpose))
