"""Writes of the agents app: the operator's and the user's agent switches."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from agents import metrics
from agents.models import AgentSwitch, AgentTask, UserAgentSwitch
from agents.registry import AgentType, agent_type
from audit.services import audit_record
from kimberly.api.errors import NotFound
from kimberly.context import Context
from users.models import User


def known_agent(name: str) -> AgentType:
    """The declared agent type `name`, or 404 `unknown_agent`."""
    agent = agent_type(name)
    if agent is None:
        raise NotFound(f"No agent type {name!r}.", code="unknown_agent")
    return agent


@transaction.atomic
def agent_switch_set(
    *, ctx: Context, agent: str, enabled: bool, reason: str = ""
) -> AgentSwitch:
    """Turn an agent type on or off for everyone (operators); audited globally."""
    known_agent(agent)
    switch, _ = AgentSwitch.objects.update_or_create(
        agent=agent,
        defaults={
            "enabled": enabled,
            "reason": reason[:500],
            "changed_by": ctx.actor.id,
        },
    )
    audit_record(
        ctx=ctx,
        action="agent.enable" if enabled else "agent.disable",
        user_id=None,
        target_type="agent",
        target_id=agent,
        details={"reason": reason[:500]} if reason else {},
    )
    if not enabled:
        switch.cancelled = cancel_queued(user=None, agent=agent)  # type: ignore[attr-defined]
    return switch


@transaction.atomic
def user_agent_switch_set(
    *, ctx: Context, user: User, agent: str, enabled: bool
) -> UserAgentSwitch:
    """Turn an agent type on or off for this user only; audited in their chain."""
    known_agent(agent)
    switch, _ = UserAgentSwitch.objects.update_or_create(
        user=user, agent=agent, defaults={"enabled": enabled}
    )
    audit_record(
        ctx=ctx,
        action="agent.user_enable" if enabled else "agent.user_disable",
        user_id=user.pk,
        target_type="agent",
        target_id=agent,
    )
    if not enabled:
        switch.cancelled = cancel_queued(user=user, agent=agent)  # type: ignore[attr-defined]
    return switch


def cancel_queued(*, user: User | None, agent: str) -> int:
    """Cancel the waiting tasks of a type just turned off (for everyone, or for
    one user); running ones go on to their end or their time limit."""
    rows = AgentTask.objects.filter(agent=agent, status=AgentTask.Status.QUEUED)
    if user is not None:
        rows = rows.filter(user=user)
    n = rows.update(
        status=AgentTask.Status.CANCELLED,
        finished_at=timezone.now(),
        error={
            "code": "agent_disabled",
            "message": "The agent was turned off before the task started.",
        },
    )
    if n:
        metrics.tasks.labels(agent=agent, status=AgentTask.Status.CANCELLED).inc(n)
    return n
