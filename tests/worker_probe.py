"""A task for tests that run a real worker process (`celery worker -I tests.worker_probe`)."""

from __future__ import annotations

import os

from celery import shared_task
from prometheus_client import Counter

from kimberly import rls

probe_runs = Counter("kimberly_test_probe_runs", "Runs of the test probe task.")


@shared_task(name="tests.worker_probe.bump")
@rls.task_scope(no_rows="a test probe")
def bump() -> int:
    probe_runs.inc()
    return os.getpid()
