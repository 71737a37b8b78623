"""Celery tasks of retention (registered through privacy/tasks.py)."""

from __future__ import annotations

from celery import shared_task

from kimberly import rls
from privacy.retention.enforce import retention_enforce


@shared_task(
    name="privacy.tasks.enforce_retention", time_limit=3600, soft_time_limit=3540
)
@rls.task_scope(maintenance="nightly retention: every user's data past its window")
def enforce_retention() -> dict[str, int]:
    """Nightly (CRON_RETENTION_ENFORCE): every data type's retention policy."""
    return retention_enforce()
