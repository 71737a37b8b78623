"""Reminders and events over HTTP: list, cancel, the calendar as .ics, and an
.ics import (a scheduler task, so it can be previewed like any other)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents import selectors
from agents.apis.tasks import TaskOutput
from agents.models import Event, Reminder
from agents.outputs import task_out
from agents.services import reminders as reminder_services
from agents.services import tasks as task_services
from kimberly.api.errors import check_upload_size, invalid_field
from kimberly.api.pagination import PagePagination, PageQuery
from kimberly.api.schema import error_responses
from kimberly.api.serializers import QueryInput, iso_time, parse
from kimberly.context import context_from_request, current_user


class ReminderOutput(serializers.Serializer[Any]):
    id = serializers.CharField(help_text="rem_<uuid>")
    what = serializers.CharField()
    due_at = serializers.DateTimeField()
    time_zone = serializers.CharField()
    status = serializers.ChoiceField(choices=Reminder.Status.choices)
    task_id = serializers.CharField(allow_null=True)
    delivered_at = serializers.DateTimeField(allow_null=True)
    memory_id = serializers.CharField(allow_null=True, help_text="what it became")
    error = serializers.CharField()
    webhook = serializers.ChoiceField(choices=Reminder.Webhook.choices)
    webhook_attempts = serializers.IntegerField()


def reminder_out(r: Reminder) -> dict[str, Any]:
    return {
        "id": r.public_id,
        "what": r.what,
        "due_at": iso_time(r.due_at),
        "time_zone": r.time_zone,
        "status": r.status,
        "task_id": f"tsk_{r.task_id}" if r.task_id else None,
        "delivered_at": iso_time(r.delivered_at),
        "memory_id": f"mem_{r.memory_id}" if r.memory_id else None,
        "error": r.error,
        "webhook": r.webhook,
        "webhook_attempts": r.webhook_attempts,
    }


class ReminderFilters(PageQuery):
    status = serializers.ChoiceField(choices=Reminder.Status.choices, required=False)


class ReminderListApi(APIView):
    """GET /v1/agents/reminders: the user's reminders, soonest due first."""

    pagination_class = PagePagination

    @extend_schema(
        parameters=[ReminderFilters], responses={200: ReminderOutput(many=True)}
    )
    def get(self, request: Request) -> Response:
        filters = parse(ReminderFilters, request.query_params.dict())
        qs = selectors.reminders_for(
            user=current_user(request), status=filters.get("status")
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response([reminder_out(r) for r in page])


class ReminderDetailApi(APIView):
    @extend_schema(responses={200: ReminderOutput, **error_responses(404)})
    def get(self, request: Request, reminder_id: str) -> Response:
        rem = selectors.reminder_get(
            user=current_user(request), reminder_id=reminder_id
        )
        return Response(reminder_out(rem))


class ReminderCancelApi(APIView):
    """POST /v1/agents/reminders/{id}/cancel: a pending reminder is not delivered."""

    @extend_schema(
        request=None,
        responses={
            200: ReminderOutput,
            **error_responses(404, 409, e409="reminder_not_pending"),
        },
    )
    def post(self, request: Request, reminder_id: str) -> Response:
        rem = selectors.reminder_get(
            user=current_user(request), reminder_id=reminder_id
        )
        rem = reminder_services.reminder_cancel(
            ctx=context_from_request(request), reminder=rem
        )
        return Response(reminder_out(rem))


class EventOutput(serializers.Serializer[Any]):
    id = serializers.CharField(help_text="evt_<uuid>")
    uid = serializers.CharField()
    title = serializers.CharField()
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField(allow_null=True)
    all_day = serializers.BooleanField()
    source = serializers.ChoiceField(choices=Event.Source.choices)  # type: ignore[assignment]
    memory_id = serializers.CharField(allow_null=True, help_text="found in")
    task_id = serializers.CharField(allow_null=True)


def event_out(e: Event) -> dict[str, Any]:
    return {
        "id": e.public_id,
        "uid": e.uid,
        "title": e.title,
        "starts_at": iso_time(e.starts_at),
        "ends_at": iso_time(e.ends_at),
        "all_day": e.all_day,
        "source": e.source,
        "memory_id": f"mem_{e.memory_id}" if e.memory_id else None,
        "task_id": f"tsk_{e.task_id}" if e.task_id else None,
    }


class EventListApi(APIView):
    """GET /v1/agents/events: the scheduler's events, in date order."""

    pagination_class = PagePagination

    @extend_schema(parameters=[PageQuery], responses={200: EventOutput(many=True)})
    def get(self, request: Request) -> Response:
        parse(PageQuery, request.query_params.dict())
        qs = selectors.events_for(user=current_user(request))
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response([event_out(e) for e in page])


class IcsUploadInput(QueryInput):
    file = serializers.FileField(help_text="an iCalendar (.ics) file")
    preview = serializers.BooleanField(default=False)


class CalendarApi(APIView):
    """GET /v1/agents/calendar.ics: the events as iCalendar. POST (multipart
    `file`): import an .ics file, as a scheduler task (202)."""

    parser_classes = [MultiPartParser]

    @extend_schema(
        responses={
            (200, "text/calendar"): OpenApiResponse(
                str, description="the user's events as an iCalendar file"
            )
        }
    )
    def get(self, request: Request) -> HttpResponse:
        response = HttpResponse(
            selectors.calendar_for(user=current_user(request)),
            content_type="text/calendar",
        )
        response["Content-Disposition"] = 'attachment; filename="kimberly.ics"'
        return response

    @extend_schema(
        request={"multipart/form-data": IcsUploadInput},
        responses={202: TaskOutput, **error_responses(400, 409, 413, 429)},
    )
    def post(self, request: Request) -> Response:
        data = parse(IcsUploadInput, request.data)
        check_upload_size(data["file"].size, settings.AGENT_PARAMS_MAX_BYTES // 2)
        try:
            text = data["file"].read().decode("utf-8")
        except UnicodeDecodeError:
            raise invalid_field("file", "must be a UTF-8 .ics file") from None
        task = task_services.task_submit(
            ctx=context_from_request(request),
            user=current_user(request),
            task="Import calendar file",
            agent="scheduler",
            params={"ics": text, "source": "ics"},
            preview=data["preview"],
        )
        return Response(task_out(task), status=202)
