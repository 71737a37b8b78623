"""Prometheus metrics of Celery workers and beat, served on their own port.

Task code runs in the worker's child processes (prefork), which write their
metrics to PROMETHEUS_MULTIPROC_DIR; the worker's main process serves them all,
added up, on WORKER_METRICS_ADDR:WORKER_METRICS_PORT (like gunicorn's /metrics
does for its workers). Beat, one process, serves its own the same way. Port 0
turns the endpoint off (the test settings do, for in-process test workers).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery.signals import beat_init, worker_init, worker_process_shutdown
from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

logger = logging.getLogger(__name__)


def _registry() -> CollectorRegistry:
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Without the directory, children keep their metrics to themselves: only
        # this process's (a solo pool's, beat's) can be served.
        logger.warning("PROMETHEUS_MULTIPROC_DIR is unset: child metrics are lost")
        return REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry(auto_describe=False)
    multiprocess.MultiProcessCollector(registry)
    return registry


def serve_metrics(role: str) -> int | None:
    """Start the metrics endpoint in a daemon thread; returns its port (None: off)."""
    from django.conf import settings

    port, addr = settings.WORKER_METRICS_PORT, settings.WORKER_METRICS_ADDR
    if not port:
        return None
    try:
        start_http_server(port, addr=addr, registry=_registry())
    except OSError:
        # A metrics port in use must not stop the worker from working.
        logger.exception("metrics endpoint not started", extra={"port": port})
        return None
    logger.info("metrics endpoint up", extra={"role": role, "port": port})
    return int(port)


@worker_init.connect
def _serve_worker_metrics(**_: Any) -> None:
    serve_metrics("worker")


@beat_init.connect
def _serve_beat_metrics(**_: Any) -> None:
    serve_metrics("beat")


@worker_process_shutdown.connect
def _mark_child_dead(pid: int | None = None, **_: Any) -> None:
    # Multiprocess mode: a dead child's live gauges must stop being reported.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())
