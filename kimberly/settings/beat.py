"""The periodic tasks beat sends (imported by base.py), each schedule from the
environment: a five-field cron expression (CRON_*) or seconds."""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from kimberly.env import env_float, env_str
from kimberly.settings.agents import AGENT_REMINDER_SCAN_SECONDS, AGENT_SWEEP_SECONDS


def _cron(name: str, default: str) -> crontab | None:
    """A five-field cron expression from the environment, e.g. '0 2 * * *', or
    "off": the entry is left out (a Kubernetes CronJob runs it instead)."""
    if env_str(name, default).strip().lower() == "off":
        return None
    expr = env_str(name, default).split()
    if len(expr) != 5:
        raise ImproperlyConfigured(f"{name} must be a 5-field cron expression")
    minute, hour, dom, month, dow = expr
    return crontab(
        minute=minute, hour=hour, day_of_month=dom, month_of_year=month, day_of_week=dow
    )


# Written here (an entry switched "off" is dropped below), seeded into django-celery-beat's tables at beat start-up by
# kimberly.beat.SeededDatabaseScheduler; edits in the admin survive restarts
# until the value here changes.
CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "purge-expired-auth-tokens": {
        "task": "users.tasks.purge_expired_tokens",
        "schedule": _cron("CRON_PURGE_TOKENS", "17 3 * * *"),
    },
    "sweep-unembedded-memories": {
        "task": "memory.tasks.sweep_unembedded",
        "schedule": _cron("CRON_SWEEP_UNEMBEDDED", "* * * * *"),
    },
    "flush-retrieval-log": {
        "task": "memory.tasks.flush_retrieval_log",
        "schedule": env_float("RETRIEVAL_LOG_FLUSH_SECONDS", 10.0),
    },
    "meditate-all-users": {
        "task": "memory.tasks.meditate_all",
        "schedule": _cron("CRON_MEDITATION", "0 2 * * *"),
    },
    "requeue-stale-meditations": {
        "task": "memory.tasks.requeue_stale_meditations",
        "schedule": _cron("CRON_MEDITATION_REQUEUE", "*/15 * * * *"),
    },
    "requeue-stale-imports": {
        "task": "memory.tasks.requeue_stale_imports",
        "schedule": _cron("CRON_IMPORT_REQUEUE", "*/10 * * * *"),
    },
    "purge-withdrawn-sensitive": {
        "task": "memory.tasks.purge_withdrawn_sensitive",
        "schedule": _cron("CRON_PURGE_WITHDRAWN_SENSITIVE", "41 * * * *"),
    },
    "purge-idempotency-keys": {
        "task": "memory.tasks.purge_idempotency_keys",
        "schedule": _cron("CRON_PURGE_IDEMPOTENCY_KEYS", "27 * * * *"),
    },
    "agents-deliver-due-reminders": {
        "task": "agents.tasks.deliver_due_reminders",
        "schedule": AGENT_REMINDER_SCAN_SECONDS,
    },
    "agents-sweep-tasks": {
        "task": "agents.tasks.sweep_tasks",
        "schedule": AGENT_SWEEP_SECONDS,
    },
    # every retention policy (privacy/retention), before the nightly meditation
    "privacy-enforce-retention": {
        "task": "privacy.tasks.enforce_retention",
        # (CRON_PRUNE_RETRIEVAL_RECORDS: its name before retention existed)
        "schedule": _cron(
            "CRON_RETENTION_ENFORCE",
            env_str("CRON_PRUNE_RETRIEVAL_RECORDS", "37 1 * * *"),
        ),
    },
    # backups/: before retention and meditation change anything that night
    "backups-create": {
        "task": "backups.tasks.create_backup",
        "schedule": _cron("CRON_BACKUP_CREATE", "7 1 * * *"),
    },
    "backups-verify": {
        "task": "backups.tasks.verify_backup",
        "schedule": _cron("CRON_BACKUP_VERIFY", "47 4 * * 0"),
    },
    "privacy-expire-exports": {
        "task": "privacy.tasks.expire_exports",
        "schedule": _cron("CRON_EXPORT_EXPIRE", "41 * * * *"),
    },
}
CELERY_BEAT_SCHEDULE = {
    name: entry
    for name, entry in CELERY_BEAT_SCHEDULE.items()
    if entry["schedule"] is not None
}
