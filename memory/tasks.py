"""Background jobs of the memory app."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from memory import services


@shared_task(name="memory.tasks.purge_idempotency_keys", time_limit=300)
def purge_idempotency_keys() -> int:
    return services.idempotency_keys_purge(
        older_than_hours=settings.IDEMPOTENCY_TTL_HOURS
    )
