"""The Celery app: configured from Django settings (CELERY_*), tasks autodiscovered."""

import os
from typing import Any

from celery import Celery
from celery.signals import (
    beat_init,
    setup_logging,
    task_postrun,
    task_prerun,
    worker_process_init,
)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kimberly.settings.base")
# Worker and beat each get their own Prometheus multiprocess directory (Procfile);
# it must exist before the first metric is created, whoever started the process.
if _metrics_dir := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(_metrics_dir, exist_ok=True)


class _CapTimeLimits:
    """No task outlives the deployment's shutdown grace: each task's own limits
    are capped at CELERY_TASK_TIME_LIMIT / CELERY_TASK_SOFT_TIME_LIMIT, which the
    manifests keep below the grace period (fly.toml kill_timeout, k8s
    terminationGracePeriodSeconds). A task may ask for less, never for more."""

    def annotate(self, task: Any) -> dict[str, int] | None:
        hard, soft = app.conf.task_time_limit, app.conf.task_soft_time_limit
        caps: dict[str, int] = {}
        if hard and (task.time_limit is None or task.time_limit > hard):
            caps["time_limit"] = hard
        if soft and (task.soft_time_limit is None or task.soft_time_limit > soft):
            caps["soft_time_limit"] = soft
        return caps or None


app = Celery("kimberly")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_annotations = (_CapTimeLimits(),)
app.autodiscover_tasks()

# Connects the signal handlers that serve worker and beat metrics on their port.
import kimberly.worker_metrics  # noqa: E402, F401


@setup_logging.connect
def _logging(**_: object) -> None:
    """Workers and beat log as the web does (settings LOGGING: JSON on stdout):
    with a receiver here, Celery adds no handler or format of its own."""
    import logging.config

    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


@task_prerun.connect
def _bind_task(task_id: str | None = None, task: Any = None, **_: object) -> None:
    """Each log line of a task carries its id and name (kimberly/logging.py)."""
    from kimberly.logging import bind_task

    bind_task(task_id, getattr(task, "name", None))


@task_postrun.connect
def _unbind_task(**_: object) -> None:
    from kimberly.logging import unbind_task

    unbind_task()


@worker_process_init.connect
def _warm_up(**_: object) -> None:
    """Each worker child does the apps' warm-up as it starts, not on its first
    task (the embedding model takes 10-20 s to load on 2 cores)."""
    from kimberly import hooks

    hooks.run_warmups(in_thread=True)


@worker_process_init.connect
def _trace_worker(**_: object) -> None:
    """Tracing (settings.OTEL_ENABLED) in each worker child, after the fork: the
    exporter's thread and connections must belong to the process using them."""
    from kimberly import tracing

    tracing.setup("worker")


@beat_init.connect
def _trace_beat(**_: object) -> None:
    from kimberly import tracing

    tracing.setup("beat")
