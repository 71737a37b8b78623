"""HTTP API of the agents app: the agent types with their state, and the user's switch."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents import selectors, services
from agents.registry import PERMISSIONS
from kimberly.api.schema import error_responses
from kimberly.api.serializers import StrictInput, parse
from kimberly.context import context_from_request, current_user


class AgentOutput(serializers.Serializer[Any]):
    name = serializers.CharField()
    description = serializers.CharField()
    risk = serializers.ChoiceField(choices=["low", "medium", "high"])
    permissions = serializers.ListField(
        child=serializers.ChoiceField(choices=list(PERMISSIONS))
    )
    tiers = serializers.ListField(child=serializers.CharField())
    default_timeout = serializers.IntegerField(help_text="seconds")
    max_timeout = serializers.IntegerField(help_text="seconds")
    idempotent = serializers.BooleanField(help_text="a failed task may be retried")
    enabled = serializers.BooleanField(help_text="on for everyone and for you")
    operator_enabled = serializers.BooleanField()
    user_enabled = serializers.BooleanField()


def agent_out(state: selectors.AgentState) -> dict[str, Any]:
    a = state.agent
    return {
        "name": a.name,
        "description": a.description,
        "risk": a.risk,
        "permissions": list(a.permissions),
        "tiers": list(a.tiers),
        "default_timeout": a.default_timeout,
        "max_timeout": a.max_timeout,
        "idempotent": a.idempotent,
        "enabled": state.enabled,
        "operator_enabled": state.operator_enabled,
        "user_enabled": state.user_enabled is not False,
    }


class AgentListApi(APIView):
    """GET /v1/agents: every agent type, its risk, permissions and state."""

    @extend_schema(
        operation_id="agents_list",
        responses={
            200: inline_serializer("AgentList", {"items": AgentOutput(many=True)})
        },
    )
    def get(self, request: Request) -> Response:
        states = selectors.agent_states(user=current_user(request))
        return Response({"items": [agent_out(s) for s in states]})


class AgentDetailApi(APIView):
    """GET /v1/agents/{name}; PUT {enabled} turns it on or off for you."""

    class SwitchInput(StrictInput):
        enabled = serializers.BooleanField()

    @extend_schema(responses={200: AgentOutput, **error_responses(404)})
    def get(self, request: Request, name: str) -> Response:
        services.known_agent(name)
        state = selectors.agent_state(name=name, user=current_user(request))
        assert state is not None
        return Response(agent_out(state))

    @extend_schema(
        request=SwitchInput, responses={200: AgentOutput, **error_responses(404)}
    )
    def put(self, request: Request, name: str) -> Response:
        data = parse(self.SwitchInput, request.data)
        user = current_user(request)
        services.user_agent_switch_set(
            ctx=context_from_request(request),
            user=user,
            agent=name,
            enabled=data["enabled"],
        )
        state = selectors.agent_state(name=name, user=user)
        assert state is not None
        return Response(agent_out(state))
