"""Readiness checks for the stores Kimberly cannot work without."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from django_redis import get_redis_connection
from kombu import Connection

from kimberly.apps import KimberlyConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    ms: float
    error: str | None = None


def uptime_seconds() -> float:
    return round(time.monotonic() - KimberlyConfig.started_at, 3)


def _check_database() -> None:
    with connection.cursor() as cur:
        cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        if cur.fetchone() is None:
            raise RuntimeError("pgvector extension is not installed")


def _check_redis() -> None:
    get_redis_connection("default").ping()


def _check_broker() -> None:
    with Connection(
        settings.CELERY_BROKER_URL,
        connect_timeout=1,
        transport_options={"socket_timeout": 1, "socket_connect_timeout": 1},
    ) as conn:
        conn.ensure_connection(
            max_retries=1, interval_start=0, interval_step=0, timeout=2
        )


def _check_storage() -> None:
    name = default_storage.save(f"health/{uuid.uuid4().hex}.txt", ContentFile(b"ok"))
    default_storage.delete(name)


CHECKS: dict[str, Callable[[], None]] = {
    "database": _check_database,
    "redis": _check_redis,
    "broker": _check_broker,
    "storage": _check_storage,
}


def readiness() -> list[CheckResult]:
    """Run every check; a failure is reported by name, never raised."""
    results = []
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            check()
            error = None
        except Exception as exc:
            # The class name only: messages can carry hostnames and users, and this
            # endpoint answers without authentication. Details go to the log.
            error = type(exc).__name__
            logger.warning(
                "readiness check failed", extra={"check": name}, exc_info=True
            )
        results.append(
            CheckResult(
                name,
                error is None,
                round((time.perf_counter() - started) * 1000, 1),
                error,
            )
        )
    return results
