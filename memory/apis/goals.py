"""The user's goals (GET/POST /v1/goals, DELETE /v1/goals/{id})."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from kimberly.api.serializers import NonBlank, StrictInput, documented_json, parse
from kimberly.context import context_from_request, current_user
from memory import selectors, services
from memory.apis.schemas import (
    GoalListOutput,
    GoalOutput,
    tag_list,
)


class GoalInput(StrictInput):
    text = serializers.CharField(
        trim_whitespace=False, max_length=1000, validators=[NonBlank()]
    )
    tags = documented_json(tag_list(), required=False)


class GoalCollectionApi(APIView):
    @extend_schema(responses={200: GoalListOutput})
    def get(self, request: Request) -> Response:
        goals = selectors.goals_for(user=current_user(request))
        return Response({"items": GoalOutput(goals, many=True).data})

    @extend_schema(request=GoalInput, responses={201: GoalOutput})
    def post(self, request: Request) -> Response:
        data = parse(GoalInput, request.data)
        goal = services.goal_create(
            ctx=context_from_request(request),
            user=current_user(request),
            text=data["text"],
            tags=data.get("tags"),
        )
        return Response(GoalOutput(goal).data, status=201)


class GoalDetailApi(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, goal_id: int) -> Response:
        services.goal_delete(
            ctx=context_from_request(request),
            user=current_user(request),
            goal_id=goal_id,
        )
        return Response(status=204)
