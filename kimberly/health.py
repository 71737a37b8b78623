"""Readiness: can this process serve requests?

Only PostgreSQL (with pgvector and the migrations of this code applied) is
required. Redis, the broker and storage are reported but never fatal: the code
keeps working without them (rate limits fail open, short-term context is rebuilt
from PostgreSQL, enqueues fall back to the periodic sweeps), and one blip of a
shared store must not take every web pod out of service at once. Every check is
read-only: the probe runs every few seconds on every pod.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django_redis import get_redis_connection
from kombu import Connection

from kimberly import storage
from kimberly.apps import KimberlyConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    ms: float
    required: bool
    error: str | None = None


def uptime_seconds() -> float:
    return round(time.monotonic() - KimberlyConfig.started_at, 3)


class _Migrations:
    # Once this code's migrations are in, they stay in: load the migration graph
    # (tens of ms) only until the first success.
    applied = False


def _check_database() -> None:
    with connection.cursor() as cur:
        cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        if cur.fetchone() is None:
            raise RuntimeError("pgvector extension is not installed")
    if not _Migrations.applied:
        executor = MigrationExecutor(connection)
        if executor.migration_plan(executor.loader.graph.leaf_nodes()):
            raise RuntimeError("migrations are not applied")
        _Migrations.applied = True


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
    # A HEAD of the bucket, never a write: it exists and takes our credentials.
    # No bucket configured is StorageNotConfigured. The storage's client_config
    # bounds a dead S3 to about 2 s (connect timeout x attempts).
    storage.ping()


# name -> (check, required for readiness)
CHECKS: dict[str, tuple[Callable[[], None], bool]] = {
    "database": (_check_database, True),
    "redis": (_check_redis, False),
    "broker": (_check_broker, False),
    "storage": (_check_storage, False),
}


# The optional checks run side by side under one deadline, so stores that hang
# (a blackholed broker, say) cannot make the probe itself time out; the database
# check runs in the request's thread, on its connection.
OPTIONAL_DEADLINE_SECONDS = 2.0
_pool = ThreadPoolExecutor(max_workers=len(CHECKS), thread_name_prefix="readiness")


def _timed(name: str, check: Callable[[], None]) -> tuple[float, str | None]:
    started = time.perf_counter()
    try:
        check()
        error = None
    except Exception as exc:
        # The class name only: messages can carry hostnames and users, and this
        # endpoint answers without authentication. Details go to the log.
        error = type(exc).__name__
        logger.warning("readiness check failed", extra={"check": name}, exc_info=True)
    return round((time.perf_counter() - started) * 1000, 1), error


_in_flight: dict[str, Future[tuple[float, str | None]]] = {}
_in_flight_lock = threading.Lock()


def _submit(name: str, check: Callable[[], None]) -> Future[tuple[float, str | None]]:
    """One run of each check at a time: while a hung one is still running, later
    probes wait on it (and report it timed out) instead of queueing more behind
    it, so one stuck store cannot fill the pool and starve the other checks."""
    with _in_flight_lock:
        running = _in_flight.get(name)
        if running is not None and not running.done():
            return running
        _in_flight[name] = future = _pool.submit(_timed, name, check)
        return future


def readiness() -> list[CheckResult]:
    """Run every check; a failure is reported by name, never raised."""
    futures = {
        name: _submit(name, check)
        for name, (check, required) in CHECKS.items()
        if not required
    }
    done: dict[str, tuple[float, str | None]] = {
        name: _timed(name, check)
        for name, (check, required) in CHECKS.items()
        if required
    }
    deadline = time.monotonic() + OPTIONAL_DEADLINE_SECONDS
    for name, future in futures.items():
        try:
            done[name] = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            logger.warning("readiness check timed out", extra={"check": name})
            done[name] = (OPTIONAL_DEADLINE_SECONDS * 1000, "TimeoutError")
    return [
        CheckResult(name, done[name][1] is None, done[name][0], required, done[name][1])
        for name, (_, required) in CHECKS.items()
    ]
