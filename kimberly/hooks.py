"""Start-up hooks: apps register them in AppConfig.ready, kimberly/ runs them.

kimberly/ sits below every app and imports none of them. A process that wants
the apps' warm-up work done before its first request or task (gunicorn after
fork, each Celery worker child) calls run_warmups(); what that work is (loading
the embedding model, say) is the registering app's business. Likewise the apps'
store gauges, which /metrics exports, and their dependencies' checks, which
`./cli healthcheck` runs (kimberly/healthcheck.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric

logger = logging.getLogger(__name__)

_warmups: list[Callable[[], None]] = []

# Gauges read from the stores at scrape time (the web's /metrics). Their own
# registries: in multiprocess mode the default one only aggregates what processes
# wrote to PROMETHEUS_MULTIPROC_DIR, which cannot hold DB-derived values.
# store_registry is read in a maintenance scope (counts over every user's rows);
# system_registry needs no scope (PostgreSQL's own statistics, the broker), so it
# still answers when the database does not.
store_registry = CollectorRegistry(auto_describe=False)
system_registry = CollectorRegistry(auto_describe=False)
_store_collectors: set[str] = set()


class _Guarded:
    """A collector that never raises: a store that cannot be read leaves its own
    gauges out of the scrape (and logs why), not every other collector's."""

    def __init__(self, collector: Any) -> None:
        self.collector = collector

    def collect(self) -> Iterator[Metric]:
        try:
            metrics = list(self.collector.collect())
        except Exception:  # a scrape must always answer
            logger.warning(
                "store collector %s failed",
                type(self.collector).__qualname__,
                exc_info=True,
            )
            return iter(())
        return iter(metrics)


def register_store_collector(collector: Any, *, user_rows: bool = True) -> None:
    """Export `collector` (anything with collect()) at every scrape, once per class
    (ready() may run again in one process, e.g. in tests). user_rows=False: it
    reads no table of user data, and is exported outside the maintenance scope."""
    name = f"{type(collector).__module__}.{type(collector).__qualname__}"
    if name not in _store_collectors:
        _store_collectors.add(name)
        registry = store_registry if user_rows else system_registry
        registry.register(_Guarded(collector))


@dataclass(frozen=True)
class HealthCheck:
    """A dependency an app has: `check` returns a detail or raises."""

    name: str
    check: Callable[[], str | None]
    required: bool
    seconds: float  # how long the check may take


health_checks: dict[str, HealthCheck] = {}


def register_healthcheck(
    name: str, check: Callable[[], str | None], *, required: bool, seconds: float
) -> None:
    """One row of `./cli healthcheck` (registering the name again replaces it)."""
    health_checks[name] = HealthCheck(name, check, required, seconds)


def register_warmup(fn: Callable[[], None]) -> None:
    """Run `fn` when a serving process starts (idempotent per function)."""
    if fn not in _warmups:
        _warmups.append(fn)


def run_warmups(*, in_thread: bool = False) -> None:
    """Run every registered warm-up; a failing one is logged and never fatal.

    in_thread: a Celery child must report ready within worker_proc_alive_timeout,
    so it warms up in a daemon thread instead of before it answers.
    """

    def run() -> None:
        for fn in list(_warmups):
            try:
                fn()
            except Exception:
                logger.exception("warm-up %s failed", getattr(fn, "__name__", fn))

    if in_thread:
        threading.Thread(target=run, name="warm-up", daemon=True).start()
    else:
        run()
