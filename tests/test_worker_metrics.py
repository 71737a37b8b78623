"""Metrics updated in Celery worker children reach Prometheus via the worker's port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

from kimberly.celery import app as celery_app
from kimberly.runtime import common

ROOT = Path(__file__).resolve().parents[1]


def _scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            return r.read().decode()
    except OSError:
        return ""


@pytest.mark.slow
def test_a_metric_a_task_updates_in_a_worker_child_is_served_on_the_worker_port(
    tmp_path,
):
    port = common.free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "kimberly.settings.test",
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "EMBEDDING_WARMUP": "0",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "WORKER_METRICS_PORT": str(port),
    }
    celery_app.control.purge()
    worker = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "celery"),
            *("-A", "kimberly.celery", "worker", "--pool", "prefork"),
            *("--concurrency", "1", "--include", "tests.worker_probe"),
            *("--without-mingle", "--without-gossip", "--loglevel", "WARNING"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        celery_app.send_task("tests.worker_probe.bump")
        celery_app.send_task("tests.worker_probe.bump")
        text = ""
        deadline = time.monotonic() + 90
        while "kimberly_test_probe_runs_total 2.0" not in text:
            assert worker.poll() is None, "the worker exited"
            assert time.monotonic() < deadline, f"not served on :{port}: {text!r}"
            time.sleep(0.5)
            text = _scrape(port)
    finally:
        worker.terminate()
        worker.wait(30)
        celery_app.control.purge()
