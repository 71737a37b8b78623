"""Reads of the agents app: agent types with their state, and the user's tasks,
reminders and events (always scoped by the user)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import connection
from django.db.models import Count, QuerySet
from django.utils import timezone

from agents.ics import IcsEvent, calendar_ics
from agents.models import (
    EVENT_ID_PREFIX,
    REMINDER_ID_PREFIX,
    TASK_ID_PREFIX,
    AgentSwitch,
    AgentTask,
    Event,
    Reminder,
    UserAgentSwitch,
)
from agents.registry import AGENT_TYPES, AgentType
from kimberly.api.errors import NotFound
from memory import gateway
from users.models import User


@dataclass(frozen=True)
class AgentState:
    agent: AgentType
    operator_enabled: bool  # the global switch (./cli agent enable|disable)
    operator_reason: str
    user_enabled: bool | None  # the user's own switch (None: no user asked)

    @property
    def enabled(self) -> bool:
        """May run: on for everyone and, for a user, on for them too."""
        return self.operator_enabled and self.user_enabled is not False


def agent_states(*, user: User | None = None) -> list[AgentState]:
    """Every declared agent type with its switches, in declaration order."""
    switches = {s.agent: s for s in AgentSwitch.objects.all()}
    mine: dict[str, bool] = {}
    if user is not None:
        mine = dict(
            UserAgentSwitch.objects.filter(user=user).values_list("agent", "enabled")
        )
    states = []
    for name, agent in AGENT_TYPES.items():
        switch = switches.get(name)
        states.append(
            AgentState(
                agent=agent,
                operator_enabled=switch.enabled if switch else True,
                operator_reason=switch.reason if switch else "",
                user_enabled=mine.get(name, True) if user is not None else None,
            )
        )
    return states


def agent_state(*, name: str, user: User | None = None) -> AgentState | None:
    return next((s for s in agent_states(user=user) if s.agent.name == name), None)


def users_who_turned_off(*, name: str) -> int:
    return UserAgentSwitch.objects.filter(agent=name, enabled=False).count()


def _owned(model: type[Any], prefix: str, user: User, public_id: str, what: str) -> Any:
    """One of the user's rows by public id; another user's is 404 like a missing one."""
    try:
        if not public_id.startswith(prefix):
            raise ValueError
        return model.objects.get(
            pk=uuid.UUID(public_id.removeprefix(prefix)), user=user
        )
    except (ValueError, model.DoesNotExist):
        raise NotFound(f"No {what} {public_id[:64]}.") from None


def task_get(*, user: User, task_id: str) -> AgentTask:
    return _owned(AgentTask, TASK_ID_PREFIX, user, task_id, "agent task")


def tasks_for(
    *, user: User, agent: str | None = None, status: str | None = None
) -> QuerySet[AgentTask]:
    """The user's tasks, newest first, optionally of one agent or status."""
    rows = AgentTask.objects.filter(user=user)
    if agent:
        rows = rows.filter(agent=agent)
    if status:
        rows = rows.filter(status=status)
    return rows.order_by("-created_at", "-pk")


def reminder_get(*, user: User, reminder_id: str) -> Reminder:
    return _owned(Reminder, REMINDER_ID_PREFIX, user, reminder_id, "reminder")


def reminders_for(*, user: User, status: str | None = None) -> QuerySet[Reminder]:
    """The user's reminders, soonest due first."""
    rows = Reminder.objects.filter(user=user)
    if status:
        rows = rows.filter(status=status)
    return rows.order_by("due_at", "pk")


def event_get(*, user: User, event_id: str) -> Event:
    return _owned(Event, EVENT_ID_PREFIX, user, event_id, "event")


def events_for(*, user: User) -> QuerySet[Event]:
    """The user's events, in date order."""
    return Event.objects.filter(user=user).order_by("starts_at", "pk")


def calendar_for(*, user: User) -> bytes:
    """The user's events as an iCalendar file (GET /v1/agents/calendar.ics and
    the Agents screen's download)."""
    events = [
        IcsEvent(
            uid=e.uid,
            title=e.title,
            starts_at=e.starts_at,
            ends_at=e.ends_at,
            all_day=e.all_day,
        )
        for e in events_for(user=user)
    ]
    return calendar_ics(events, name="Kimberly")


@dataclass(frozen=True)
class AgentStats:
    """What `./cli agent status` shows per type beyond its switch."""

    running: int
    queued: int
    failed_last_hour: int
    timed_out_last_hour: int
    p95_seconds: float | None  # of executions finished in the last hour


def agent_stats(*, name: str) -> AgentStats:
    since = timezone.now() - timedelta(hours=1)
    rows = AgentTask.objects.filter(agent=name)
    counts = dict(
        rows.filter(status__in=["running", "queued"])
        .values_list("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    recent = rows.filter(finished_at__gte=since, started_at__isnull=False)
    finished = dict(
        recent.values_list("status").annotate(n=Count("pk")).values_list("status", "n")
    )
    with connection.cursor() as cur:
        cur.execute(
            "SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM"
            " finished_at - started_at)) FROM agents_agenttask WHERE agent = %s"
            " AND finished_at >= %s AND started_at IS NOT NULL",
            [name, since],
        )
        p95 = cur.fetchone()[0]
    return AgentStats(
        running=counts.get("running", 0),
        queued=counts.get("queued", 0),
        failed_last_hour=finished.get("failed", 0),
        timed_out_last_hour=finished.get("timed_out", 0),
        p95_seconds=round(float(p95), 3) if p95 is not None else None,
    )


def stale_reads(task: AgentTask) -> list[str]:
    """The memories a task read that it may no longer use: deleted, archived,
    made sensitive, or edited since (their digest changed). A preview whose
    reads went stale cannot be committed, and a result built on them is
    withheld, as chat withholds a reply that used them."""
    read: dict[uuid.UUID, str] = {}
    for step in task.trace:
        for r in step.get("reads", []):
            read[uuid.UUID(r["memory_id"].removeprefix("mem_"))] = r.get("digest", "")
    if not read:
        return []
    agent = AGENT_TYPES[task.agent]
    grant = gateway.Grant(frozenset(agent.permissions), agent.tiers)
    states = gateway.memory_states(user=task.user, item_ids=list(read), grant=grant)
    return sorted(
        f"mem_{pk}"
        for pk, digest in read.items()
        if not states[pk].shareable or states[pk].digest != digest
    )
