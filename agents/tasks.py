"""Celery tasks of the agents app; they run on the agents queue (settings
CELERY_TASK_ROUTES) and stay thin: the work is in agents.services."""

from __future__ import annotations

from typing import Any

from billiard.exceptions import TimeLimitExceeded
from celery import Task, shared_task

from agents.services import execution, reminders
from kimberly import rls


class _Execution(Task):
    def on_failure(self, exc: Exception, task_id: str, args: Any, *_: Any) -> None:
        """Called in the worker's main process when the hard limit killed the
        child (the soft limit raised inside it, but something swallowed it)."""
        if isinstance(exc, TimeLimitExceeded):
            # Outside the task's own scope (task_scope wraps the run only).
            with rls.maintenance("agent task killed by its hard time limit"):
                execution.task_killed(task_id=args[0], claim=args[1])


@shared_task(name="agents.tasks.run_task", acks_late=True, base=_Execution)
@rls.task_scope(owner=rls.owner_of("agents.AgentTask", "task_id"))
def run_task(task_id: str, claim: str) -> str:
    """One execution of an agent task (its time limits come with the message)."""
    return execution.task_execute(task_id=task_id, claim=claim)


@shared_task(name="agents.tasks.sweep_tasks")
@rls.task_scope(maintenance="sweep: stale and queued agent tasks of every user")
def sweep_tasks() -> dict[str, Any]:
    return execution.sweep_tasks()


@shared_task(name="agents.tasks.deliver_due_reminders")
@rls.task_scope(maintenance="beat: due reminders of every user")
def deliver_due_reminders() -> int:
    """Beat: every due reminder into its user's short-term memory."""
    return reminders.deliver_due()


@shared_task(name="agents.tasks.deliver_reminder_webhook", acks_late=True)
@rls.task_scope(owner=rls.owner_of("agents.Reminder", "reminder_id"))
def deliver_reminder_webhook(reminder_id: str, attempt: int) -> str:
    """One signed POST to the user's webhook (the next attempt is scheduled by it)."""
    return reminders.webhook_attempt(reminder_id=reminder_id, attempt=attempt)
