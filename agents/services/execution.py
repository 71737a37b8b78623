"""Agent task executions, on the agents worker: claim, run, finish; and the sweep.

An execution owns its task through the claim token its message carries: it
starts only if the task is still queued under that token, and writes its outcome
only while the task is still running under it. So a task cancelled meanwhile, or
a duplicate or stale message, changes nothing, and no task runs twice.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta
from typing import Any

from billiard.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agents import metrics
from agents.appliers import APPLIERS
from agents.models import AgentTask
from agents.registry import agent_type
from agents.runs import Run, TaskTimedOut, Write, agent_context
from agents.selectors import agent_state
from agents.services.tasks import check_plan_fresh, dispatch, send
from kimberly.api.errors import ApplicationError

logger = logging.getLogger(__name__)
Status = AgentTask.Status
Mode = AgentTask.Mode


def _claim(pk: uuid.UUID, claim: uuid.UUID) -> AgentTask | None:
    now = timezone.now()
    with transaction.atomic():
        task = (
            AgentTask.objects.select_for_update()
            .filter(pk=pk, claim=claim)
            .select_related("user")
            .first()
        )
        if task is None:
            return None
        redelivered = task.status == Status.RUNNING  # its worker was lost mid-run
        if task.status != Status.QUEUED and not redelivered:
            return None
        agent = agent_type(task.agent)
        assert agent is not None
        state = agent_state(name=task.agent, user=task.user)
        if (
            state is None
            or not state.enabled
            or task.agent in settings.AGENT_DENY_TYPES
        ):
            _set(task, Status.CANCELLED, error=_err("agent_disabled", "Turned off."))
            return None
        if redelivered and (
            not agent.idempotent or task.attempts >= settings.AGENT_TASK_MAX_ATTEMPTS
        ):
            _set(task, Status.FAILED, error=_err("worker_lost", "The worker was lost."))
            return None
        task.status, task.started_at = Status.RUNNING, now
        task.attempts += 1
        task.save(update_fields=["status", "started_at", "attempts"])
    return task


def _err(code: str, message: str) -> dict[str, Any]:
    return {"code": code, "message": message}


def _set(task: AgentTask, status: str, **fields: Any) -> None:
    task.status, task.finished_at = status, timezone.now()
    for name, value in fields.items():
        setattr(task, name, value)
    task.save(update_fields=["status", "finished_at", *fields])
    metrics.tasks.labels(agent=task.agent, status=status).inc()


def task_execute(*, task_id: str, claim: str) -> str:
    """Run one execution of a task; returns the status it ended in (or
    "skipped" when the message was not, or no longer, the task's)."""
    task = _claim(uuid.UUID(task_id), uuid.UUID(claim))
    if task is None:
        return "skipped"
    t0 = time.monotonic()
    try:
        return _execute(task)
    finally:
        metrics.task_seconds.labels(agent=task.agent).observe(time.monotonic() - t0)
        dispatch(task.user_id)


def _execute(task: AgentTask) -> str:
    from agents.kinds import run_agent

    agent = agent_type(task.agent)
    assert agent is not None
    run = Run(task=task, agent=agent, user=task.user)
    try:
        if task.mode == Mode.COMMIT and not agent.rerun_on_commit:
            with run.step("commit", planned_writes=len(task.plan)):
                check_plan_fresh(task)  # again: a memory may have changed since
            result, writes = task.result or {}, [Write(**w) for w in task.plan]
        else:
            result = run_agent(run)
            writes = run.writes
        if task.mode == Mode.PREVIEW:
            return _finish(task, run, Status.PREVIEWED, result=result, plan=writes)
        return _finish(task, run, Status.SUCCEEDED, result=result, apply=writes)
    except SoftTimeLimitExceeded:
        # The soft limit, or a cancel (which raises it): the row says which.
        return _finish(
            task,
            run,
            Status.TIMED_OUT,
            error=_err("timed_out", f"Stopped at its time limit of {task.timeout} s."),
        )
    except ApplicationError as exc:
        error: dict[str, Any] = {**_err(exc.code, exc.message), "details": exc.details}
        status = Status.TIMED_OUT if isinstance(exc, TaskTimedOut) else Status.FAILED
        return _finish(task, run, status, error=error)
    except Exception as exc:
        logger.exception("agent task %s failed", task.public_id)
        if agent.idempotent and task.attempts < settings.AGENT_TASK_MAX_ATTEMPTS:
            return _retry(task, run)
        failed = _err(
            "internal_error", f"The {agent.name} agent failed: {type(exc).__name__}."
        )
        return _finish(task, run, Status.FAILED, error=failed)


def _owned(task: AgentTask) -> AgentTask | None:
    """The task row, locked, if this execution still holds it."""
    return (
        AgentTask.objects.select_for_update()
        .filter(pk=task.pk, claim=task.claim, status=Status.RUNNING)
        .first()
    )


def _finish(
    task: AgentTask,
    run: Run,
    status: str,
    *,
    result: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    plan: list[Write] | None = None,
    apply: list[Write] | None = None,
) -> str:
    with transaction.atomic():
        row = _owned(task)
        if row is None:
            return "superseded"  # cancelled, or timed out by the sweep, meanwhile
        if apply:
            result = {**(result or {}), "applied": _apply(row, run, apply)}
        fields: dict[str, Any] = {"trace": [*row.trace, *run.trace()]}
        if result is not None:
            fields["result"] = result
        if error is not None:
            fields["error"] = error
        if plan is not None:
            fields["plan"] = [w.as_json() for w in plan]
        _set(row, status, **fields)
    return status


def _apply(row: AgentTask, run: Run, writes: list[Write]) -> list[dict[str, Any]]:
    ctx = agent_context(row.agent, row)
    with run.step("apply", writes=len(writes)) as step:
        out = [
            APPLIERS[w.kind](ctx, row, run.user, run.grant, w.payload) for w in writes
        ]
        step.detail["applied"] = len(out)
    step.writes = [
        {"kind": w.kind, "summary": w.summary, "applied": True} for w in writes
    ]
    return out


def _retry(task: AgentTask, run: Run) -> str:
    """Queue an idempotent task again after an unexpected failure."""
    with transaction.atomic():
        row = _owned(task)
        if row is None:
            return "superseded"
        row.status, row.dispatched_at, row.claim = Status.QUEUED, None, None
        row.trace = [*row.trace, *run.trace()]
        row.save(update_fields=["status", "dispatched_at", "claim", "trace"])
    return Status.QUEUED


KILLED = "Killed at its hard time limit (the soft limit did not end it)."


def task_killed(*, task_id: str, claim: str) -> bool:
    """The worker killed an execution at its hard time limit: the task is
    timed_out (if this execution still held it) and the user's next one goes."""
    with transaction.atomic():
        row = (
            AgentTask.objects.select_for_update()
            .filter(
                pk=uuid.UUID(task_id), claim=uuid.UUID(claim), status=Status.RUNNING
            )
            .first()
        )
        if row is None:
            return False
        _set(row, Status.TIMED_OUT, error=_err("timed_out", KILLED))
    dispatch(row.user_id)
    return True


def sweep_tasks() -> dict[str, int]:
    """Beat: end tasks whose execution outlived its hard limit (the worker was
    killed or lost; never retried from here), and hand over again the queued
    tasks whose message was lost. Returns counts."""
    now = timezone.now()
    grace = settings.AGENT_HARD_LIMIT_GRACE_SECONDS * 2
    timed_out = 0
    users: set[Any] = set()
    for task in AgentTask.objects.filter(status=Status.RUNNING).only(
        "pk", "timeout", "started_at", "user_id", "agent", "claim"
    ):
        assert task.started_at is not None
        if task.started_at + timedelta(seconds=task.timeout + grace) > now:
            continue
        with transaction.atomic():
            row = _owned(task)
            if row is not None:
                _set(
                    row,
                    Status.TIMED_OUT,
                    error=_err("timed_out", KILLED),
                )
                timed_out += 1
                users.add(row.user_id)
    resent = _resend_stale(now)
    users |= set(
        AgentTask.objects.filter(status=Status.QUEUED, dispatched_at__isnull=True)
        .values_list("user_id", flat=True)
        .distinct()
    )
    sent = sum(dispatch(u) for u in users)
    return {"timed_out": timed_out, "dispatched": sent, "resent": resent}


def _resend_stale(now: Any) -> int:
    """Send again, under the same claim, the tasks handed to the broker long ago
    and not started: a message lost in the broker. One still waiting in a long
    queue keeps its place; the copy only makes sure one arrives."""
    stale = now - timedelta(seconds=settings.AGENT_DISPATCH_STALE_SECONDS)
    rows = list(
        AgentTask.objects.filter(status=Status.QUEUED, dispatched_at__lt=stale)
        .exclude(claim=None)
        .values_list("pk", "timeout", "claim")[:1000]
    )
    for pk, timeout, claim in rows:
        if claim and AgentTask.objects.filter(
            pk=pk, claim=claim, status=Status.QUEUED
        ).update(dispatched_at=now):
            send(pk, timeout, claim)
    return len(rows)
