"""How each kind of planned write is applied (at the end of a run, or on commit).

Every applier runs inside the transaction that finishes the task, as the agent
(the ctx names the agent and the task), and returns what it made.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.utils import timezone

from agents.models import AgentTask, Event, Reminder
from audit.services import audit_record
from kimberly.api.errors import BadRequest
from kimberly.context import Context
from memory import gateway
from users.models import User

Applier = Callable[
    [Context, AgentTask, User, gateway.Grant, dict[str, Any]], dict[str, Any]
]


def _reminder(
    ctx: Context, task: AgentTask, user: User, grant: gateway.Grant, p: dict[str, Any]
) -> dict[str, Any]:
    due_at = datetime.fromisoformat(p["due_at"])
    if due_at <= timezone.now():  # a preview committed after its time
        raise BadRequest(
            f"The reminder was due at {p['due_at']}, which has passed; give the"
            " task again with a time ahead.",
            code="time_in_past",
            details={"due_at": p["due_at"]},
        )
    reminder = Reminder.objects.create(
        user=user, task=task, what=p["what"], due_at=due_at, time_zone=p["time_zone"]
    )
    audit_record(
        ctx=ctx,
        action="agent.reminder_create",
        user_id=user.pk,
        target_type="reminder",
        target_id=reminder.public_id,
        details={"due_at": p["due_at"], "task": task.public_id},
    )
    return {"reminder_id": reminder.public_id}


def _event(
    ctx: Context, task: AgentTask, user: User, grant: gateway.Grant, p: dict[str, Any]
) -> dict[str, Any]:
    event, created = Event.objects.get_or_create(
        user=user,
        uid=p["uid"],
        defaults={
            "task": task,
            "title": p["title"],
            "starts_at": datetime.fromisoformat(p["starts_at"]),
            "ends_at": datetime.fromisoformat(p["ends_at"])
            if p.get("ends_at")
            else None,
            "all_day": p.get("all_day", False),
            "source": p["source"],
            "memory_id": p.get("memory_id"),
        },
    )
    if created:
        audit_record(
            ctx=ctx,
            action="agent.event_create",
            user_id=user.pk,
            target_type="event",
            target_id=event.public_id,
            details={"task": task.public_id, "source": event.source},
        )
    return {"event_id": event.public_id, "created": created}


def _memory(
    ctx: Context, task: AgentTask, user: User, grant: gateway.Grant, p: dict[str, Any]
) -> dict[str, Any]:
    item = gateway.remember(
        ctx=ctx,
        user=user,
        content=p["content"],
        tags=p.get("tags", []),
        grant=grant,
        source=gateway.Source.AGENT,
        sensitive=bool(p.get("sensitive", False)),
    )
    return {"memory_id": item.public_id}


APPLIERS: dict[str, Applier] = {
    "reminder.create": _reminder,
    "event.create": _event,
    "memory.write": _memory,
}
