"""Agent tasks from the user's side: submit (routed, limited), cancel, commit.

Per user at most AGENT_MAX_RUNNING tasks are handed to the broker at once (the
rest wait in PostgreSQL, status `queued`, and are handed over as others end),
and at most AGENT_MAX_QUEUED may wait. The hand-over (`dispatch`) runs under a
per-user advisory lock, so two requests never both take the last slot.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from agents import routing
from agents.models import AgentTask
from agents.registry import AgentType
from agents.selectors import agent_state, stale_reads
from agents.services.switches import known_agent
from agents.violations import record_violation
from audit.services import audit_record
from kimberly.api.errors import ApplicationError, Conflict, RateLimited, invalid_field
from kimberly.context import Context
from users.models import User

logger = logging.getLogger(__name__)
Status = AgentTask.Status
LOCK_NAMESPACE = 7311  # pg_advisory_xact_lock(namespace, user) for dispatch


class AgentDisabled(ApplicationError):
    code = "agent_disabled"
    status = 409


class QueueFull(RateLimited):
    code = "agent_queue_full"


def _enabled_or_409(agent: AgentType, user: User, ctx: Context | None = None) -> None:
    """409 agent_disabled unless the type may run for `user`; a type on the
    deny list is also recorded as a violation (when a request asked for it)."""
    state = agent_state(name=agent.name, user=user)
    assert state is not None
    if agent.name in settings.AGENT_DENY_TYPES:
        if ctx is not None:
            record_violation(
                ctx=ctx, user=user, agent=agent.name, rule="deny_list", details={}
            )
        raise AgentDisabled(
            f"The {agent.name} agent is on the operator's deny list.",
            details={"agent": agent.name, "by": "operator"},
        )
    if not state.operator_enabled:
        raise AgentDisabled(
            f"The {agent.name} agent is turned off by the operator.",
            details={"agent": agent.name, "by": "operator"},
        )
    if not state.enabled:
        raise AgentDisabled(
            f"You turned the {agent.name} agent off (PUT /v1/agents/{agent.name}).",
            details={"agent": agent.name, "by": "user"},
        )


def _timeout(agent: AgentType, requested: int | None) -> int:
    if requested is None:
        return agent.default_timeout
    if not 1 <= requested <= agent.max_timeout:
        raise invalid_field(
            "params.timeout", f"must be from 1 to {agent.max_timeout} seconds"
        )
    return requested


def _check_params(params: dict[str, Any]) -> None:
    if len(json.dumps(params)) > settings.AGENT_PARAMS_MAX_BYTES:
        raise invalid_field(
            "params", f"must be at most {settings.AGENT_PARAMS_MAX_BYTES} bytes as JSON"
        )


def task_submit(
    *,
    ctx: Context,
    user: User,
    task: str,
    agent: str | None = None,
    params: dict[str, Any] | None = None,
    preview: bool = False,
) -> AgentTask:
    """Accept a task: 400 no_agent_fits, 409 agent_disabled, 429 agent_queue_full."""
    params = dict(params or {})
    _check_params(params)
    chosen = known_agent(agent) if agent else routing.route(task, params)
    _enabled_or_409(chosen, user, ctx)
    timeout = _timeout(chosen, params.pop("timeout", None))
    from agents.kinds import validate  # each agent checks its own params

    validate(chosen.name, ctx=ctx, user=user, task=task, params=params)
    with transaction.atomic():
        _lock(user.pk)
        _queue_room_or_429(user, chosen)
        row = AgentTask.objects.create(
            user=user,
            agent=chosen.name,
            task=task,
            params=params,
            routed=not agent,
            preview=preview,
            mode=AgentTask.Mode.PREVIEW if preview else AgentTask.Mode.RUN,
            timeout=timeout,
        )
        audit_record(
            ctx=ctx,
            action="agent.task_submit",
            user_id=user.pk,
            target_type="agent_task",
            target_id=row.public_id,
            details={"agent": chosen.name, "preview": preview, "routed": not agent},
        )
    dispatch(user.pk)
    return row


class PlanStale(Conflict):
    code = "plan_stale"


def check_plan_fresh(task: AgentTask) -> None:
    """409 plan_stale when a memory the preview read has changed or gone since."""
    stale = stale_reads(task)
    if stale:
        raise PlanStale(
            "Memories this preview read have changed or are gone since; preview"
            " the task again.",
            details={"memories": stale},
        )


def _queue_room_or_429(user: User, agent: AgentType) -> None:
    """429 agent_queue_full when AGENT_MAX_QUEUED of the user's tasks wait (call
    under the user's dispatch lock)."""
    waiting = AgentTask.objects.filter(user=user, status=Status.QUEUED).count()
    if waiting >= settings.AGENT_MAX_QUEUED:
        raise QueueFull(
            f"{waiting} of your agent tasks are waiting already; the limit is "
            f"{settings.AGENT_MAX_QUEUED}.",
            retry_after=max(agent.default_timeout // 2, 5),
            details={"queued": waiting, "limit": settings.AGENT_MAX_QUEUED},
        )


def _lock(user_id: Any) -> None:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
            [LOCK_NAMESPACE, str(user_id)],
        )


def dispatch(user_id: Any) -> int:
    """Hand the user's oldest waiting tasks to the broker while fewer than
    AGENT_MAX_RUNNING are running or handed over; returns how many were sent."""
    with transaction.atomic():
        _lock(user_id)
        busy = (
            AgentTask.objects.filter(user_id=user_id)
            .filter(
                Q(status=Status.RUNNING)
                | Q(status=Status.QUEUED, dispatched_at__isnull=False)
            )
            .count()
        )
        free = settings.AGENT_MAX_RUNNING - busy
        if free <= 0:
            return 0
        waiting = list(
            AgentTask.objects.filter(
                user_id=user_id, status=Status.QUEUED, dispatched_at__isnull=True
            )
            .order_by("created_at", "pk")
            .values_list("pk", "timeout")[:free]
        )
        sends = [(pk, timeout, uuid.uuid4()) for pk, timeout in waiting]
        now = timezone.now()
        for pk, _, claim in sends:
            AgentTask.objects.filter(pk=pk).update(dispatched_at=now, claim=claim)
        transaction.on_commit(lambda: _send_all(sends))
    return len(sends)


def _send_all(sends: list[tuple[uuid.UUID, int, uuid.UUID]]) -> None:
    for pk, timeout, claim in sends:
        send(pk, timeout, claim)


def send(pk: uuid.UUID, timeout: int, claim: uuid.UUID) -> None:
    """Publish one execution; its claim is the Celery task id. Sent again (by
    the sweep) with the same claim, the first copy to arrive runs it and any
    other finds it taken."""
    from agents.tasks import run_task

    # Never past the deployment's caps (kimberly.celery: a rollout's grace).
    soft = min(timeout, settings.CELERY_TASK_SOFT_TIME_LIMIT)
    hard = min(
        timeout + settings.AGENT_HARD_LIMIT_GRACE_SECONDS,
        settings.CELERY_TASK_TIME_LIMIT,
    )
    try:
        run_task.apply_async(
            args=(str(pk), str(claim)),
            task_id=str(claim),
            soft_time_limit=soft,
            time_limit=max(hard, soft + 1),
        )
    except KombuOperationalError:
        # Accepted already: it waits, not holding a slot, until the next
        # dispatch (the sweep's, or when another of the user's tasks ends).
        logger.warning("broker unavailable; agent task %s stays queued", pk)
        AgentTask.objects.filter(pk=pk, claim=claim, status=Status.QUEUED).update(
            dispatched_at=None, claim=None
        )


def task_cancel(*, ctx: Context, task: AgentTask) -> AgentTask:
    """Cancel a waiting, running or previewed task (409 `task_finished` after).
    A running execution finds it out at its next check (the coder's sandbox
    within STOP_CHECK_SECONDS) and ends without writing anything."""
    with transaction.atomic():
        row = AgentTask.objects.select_for_update().get(pk=task.pk)
        if row.status not in (Status.QUEUED, Status.RUNNING, Status.PREVIEWED):
            raise Conflict(
                f"The task is {row.status} already.",
                code="task_finished",
                details={"status": row.status},
            )
        was = row.status
        row.status, row.finished_at = Status.CANCELLED, timezone.now()
        row.error = {"code": "cancelled", "message": "Cancelled by you."}
        row.save(update_fields=["status", "finished_at", "error"])
        audit_record(
            ctx=ctx,
            action="agent.task_cancel",
            user_id=row.user_id,
            target_type="agent_task",
            target_id=row.public_id,
            details={"was": was},
        )
    dispatch(row.user_id)
    from agents import metrics

    metrics.tasks.labels(agent=row.agent, status=Status.CANCELLED).inc()
    return row


def task_commit(*, ctx: Context, user: User, task: AgentTask) -> AgentTask:
    """Apply a previewed task: queued again, to apply exactly the planned writes
    (or, for an agent whose work is an action, to run it)."""
    agent = known_agent(task.agent)
    _enabled_or_409(agent, user, ctx)
    with transaction.atomic():
        row = AgentTask.objects.select_for_update().get(pk=task.pk)
        if row.status != Status.PREVIEWED:
            raise Conflict(
                f"Only a previewed task can be committed; this one is {row.status}.",
                code="not_previewed",
                details={"status": row.status},
            )
        check_plan_fresh(row)
        _lock(user.pk)
        _queue_room_or_429(user, agent)
        row.status, row.mode = Status.QUEUED, AgentTask.Mode.COMMIT
        row.dispatched_at = row.claim = row.finished_at = None
        row.attempts = 0  # the preview's executions do not use up the commit's
        row.save(
            update_fields=[
                "status",
                "mode",
                "dispatched_at",
                "claim",
                "finished_at",
                "attempts",
            ]
        )
        audit_record(
            ctx=ctx,
            action="agent.task_commit",
            user_id=user.pk,
            target_type="agent_task",
            target_id=row.public_id,
            details={"planned_writes": len(row.plan)},
        )
    dispatch(user.pk)
    return row
