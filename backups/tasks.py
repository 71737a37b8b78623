"""Beat's nightly backup and weekly restore test (CRON_BACKUP_CREATE/VERIFY).

They run within the workers' task time limit (CELERY_TASK_TIME_LIMIT) like
every task; a database too big for that is backed up by running
`./cli backup create` from a scheduled job instead (deploy/backups.md)."""

from __future__ import annotations

from celery import shared_task

from backups.services.create import backup_create
from backups.services.verify import backup_verify
from kimberly import rls


@shared_task
@rls.task_scope(maintenance="nightly backup: dump every user's rows")
def create_backup() -> str:
    return backup_create().key


@shared_task
@rls.task_scope(maintenance="weekly restore test of the newest backup")
def verify_backup() -> str:
    run = backup_verify()
    if run.status != run.Status.SUCCEEDED:
        raise RuntimeError(f"backup verify of {run.key} failed: {run.error}")
    return run.key
