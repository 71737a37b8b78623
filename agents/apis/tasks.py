"""Agent tasks over HTTP: submit (202), list, show with trace, cancel, commit."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents import selectors
from agents.kinds.scheduler import SOURCES
from agents.models import AgentTask
from agents.outputs import task_out
from agents.registry import AGENT_TYPES
from agents.services import tasks as task_services
from kimberly.api.pagination import PagePagination, PageQuery
from kimberly.api.schema import error_responses
from kimberly.api.serializers import StrictInput, documented_json, parse
from kimberly.context import context_from_request, current_user

STATUS_HELP = (
    "queued | running | succeeded | failed | cancelled | timed_out | previewed"
)


class TaskParams(StrictInput):
    """What the agents read from params (each only its own)."""

    timeout = serializers.IntegerField(
        required=False, min_value=1, max_value=300, help_text="seconds; default 60"
    )
    code = serializers.CharField(
        required=False,
        trim_whitespace=False,
        help_text="coder: the Python program (at most AGENT_CODER_MAX_CODE_CHARS)",
    )
    text = serializers.CharField(
        required=False, max_length=20_000, help_text="scheduler: a text to read"
    )
    ics = serializers.CharField(
        required=False,
        trim_whitespace=False,
        max_length=190_000,
        help_text="scheduler: an .ics file's text to import",
    )
    source = serializers.ChoiceField(  # type: ignore[assignment]
        choices=list(SOURCES),
        required=False,
        help_text="scheduler: where to look for dates",
    )
    save = serializers.BooleanField(  # type: ignore[assignment]
        required=False, help_text="researcher: keep the digest in short-term memory"
    )


class TaskInput(StrictInput):
    agent = serializers.ChoiceField(
        choices=list(AGENT_TYPES),
        required=False,
        help_text="without it the agent is chosen from the task's text",
    )
    task = serializers.CharField(
        max_length=settings.AGENT_TASK_TEXT_MAX_CHARS, help_text="what to do, in words"
    )
    params = documented_json(TaskParams, required=False)
    preview = serializers.BooleanField(
        default=False,
        help_text="plan the memory reads and writes, apply none (then commit)",
    )


class StepSchema(serializers.Serializer[Any]):
    step = serializers.CharField()
    started_at = serializers.DateTimeField()
    duration_ms = serializers.IntegerField()
    reads = serializers.ListField(
        child=serializers.DictField(), help_text="{memory_id, tier, query}"
    )
    writes = serializers.ListField(
        child=serializers.DictField(), help_text="{kind, summary, applied?}"
    )
    detail = serializers.DictField()
    error = serializers.CharField(required=False)


class TaskOutput(serializers.Serializer[Any]):
    task_id = serializers.CharField(help_text="tsk_<uuid>")
    agent = serializers.ChoiceField(choices=list(AGENT_TYPES))
    status = serializers.ChoiceField(
        choices=AgentTask.Status.choices, help_text=STATUS_HELP
    )
    task = serializers.CharField()
    routed = serializers.BooleanField(help_text="the agent was chosen from the text")
    preview = serializers.BooleanField()
    timeout = serializers.IntegerField(help_text="seconds")
    attempts = serializers.IntegerField()
    result = serializers.DictField(
        allow_null=True, help_text="in GET /v1/agents/tasks/{id}; null in the list"
    )
    error = serializers.DictField(
        allow_null=True, help_text="{code, message, details?}"
    )
    planned_writes = serializers.ListField(
        child=serializers.DictField(), help_text="a preview's plan: {kind, summary}"
    )
    stale_memories = serializers.ListField(
        child=serializers.CharField(),
        help_text="memories it read that changed or went since: the result is"
        " withheld and a preview cannot be committed",
    )
    trace = StepSchema(many=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class TaskFilters(PageQuery):
    agent = serializers.ChoiceField(choices=list(AGENT_TYPES), required=False)
    status = serializers.ChoiceField(choices=AgentTask.Status.choices, required=False)


class TaskListApi(APIView):
    """POST /v1/agents/tasks: give an agent a task. GET: the user's tasks."""

    pagination_class = PagePagination

    @extend_schema(
        request=TaskInput,
        responses={
            202: TaskOutput,
            **error_responses(
                400,
                403,
                404,
                409,
                429,
                e400="no_agent_fits, or params the agent cannot use "
                "(no_time_found, invalid_ics, ...)",
                e403="sandbox_violation: the operator's code policy refuses it",
                e409="agent_disabled: turned off by the operator or by you",
                e429="agent_queue_full: 100 of your tasks are waiting already",
            ),
        },
        examples=[
            OpenApiExample(
                "Reminder",
                request_only=True,
                value={"task": "remind me to call mom tomorrow at 9"},
            )
        ],
    )
    def post(self, request: Request) -> Response:
        data = parse(TaskInput, request.data)
        params = parse(TaskParams, data["params"]) if "params" in data else {}
        task = task_services.task_submit(
            ctx=context_from_request(request),
            user=current_user(request),
            task=data["task"],
            agent=data.get("agent"),
            params=params,
            preview=data["preview"],
        )
        return Response(task_out(task), status=202)

    @extend_schema(parameters=[TaskFilters], responses={200: TaskOutput(many=True)})
    def get(self, request: Request) -> Response:
        filters = parse(TaskFilters, request.query_params.dict())
        qs = selectors.tasks_for(
            user=current_user(request),
            agent=filters.get("agent"),
            status=filters.get("status"),
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response([task_out(t, full=False) for t in page])


class TaskDetailApi(APIView):
    """GET /v1/agents/tasks/{id}: status, result and the trace of steps."""

    @extend_schema(responses={200: TaskOutput, **error_responses(404)})
    def get(self, request: Request, task_id: str) -> Response:
        task = selectors.task_get(user=current_user(request), task_id=task_id)
        return Response(task_out(task))


class TaskCancelApi(APIView):
    """POST /v1/agents/tasks/{id}/cancel: a waiting, running or previewed task."""

    @extend_schema(
        request=None,
        responses={
            200: TaskOutput,
            **error_responses(404, 409, e409="task_finished: it ended already"),
        },
    )
    def post(self, request: Request, task_id: str) -> Response:
        task = selectors.task_get(user=current_user(request), task_id=task_id)
        task = task_services.task_cancel(ctx=context_from_request(request), task=task)
        return Response(task_out(task))


class TaskCommitApi(APIView):
    """POST /v1/agents/tasks/{id}/commit: apply a previewed task's plan."""

    @extend_schema(
        request=None,
        responses={
            202: TaskOutput,
            **error_responses(
                404,
                409,
                e409="not_previewed (it is not a waiting preview), or agent_disabled",
            ),
        },
    )
    def post(self, request: Request, task_id: str) -> Response:
        user = current_user(request)
        task = selectors.task_get(user=user, task_id=task_id)
        task = task_services.task_commit(
            ctx=context_from_request(request), user=user, task=task
        )
        return Response(task_out(task), status=202)
