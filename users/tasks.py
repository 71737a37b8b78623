"""Periodic housekeeping for accounts."""

from __future__ import annotations

from celery import shared_task

from kimberly import rls
from users import services


@shared_task(
    name="users.tasks.purge_expired_tokens", time_limit=300, soft_time_limit=270
)
@rls.task_scope(maintenance="sweep: expired tokens of every user")
def purge_expired_tokens() -> int:
    return services.auth_tokens_purge_expired()
