"""The erasure job (Celery autodiscovers privacy.tasks, which imports this)."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from redis.exceptions import RedisError

from kimberly import rls
from kimberly.storage import StorageUnavailable
from privacy.erasure import services


@shared_task(
    name="privacy.tasks.erase_account",
    # A store that is down now is retried later; every step is idempotent.
    autoretry_for=(RedisError, StorageUnavailable),
    retry_backoff=5,
    retry_backoff_max=settings.ERASURE_RETRY_BACKOFF_MAX,
    retry_jitter=True,
    max_retries=settings.ERASURE_MAX_RETRIES,
    time_limit=settings.ERASURE_TIME_LIMIT,
    soft_time_limit=settings.ERASURE_TIME_LIMIT - 60,
)
@rls.task_scope(maintenance="erasure: one account, probed in every table")
def erase_account(deletion_id: str) -> None:
    """Erase the account of one deletion; a finished or missing one is left alone."""
    services.deletion_run(deletion_id=deletion_id)
