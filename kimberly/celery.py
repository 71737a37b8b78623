"""The Celery app: configured from Django settings (CELERY_*), tasks autodiscovered."""

import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kimberly.settings.base")

app = Celery("kimberly")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Connects the signal handlers that serve worker and beat metrics on their port.
import kimberly.worker_metrics  # noqa: E402, F401


@worker_process_init.connect
def _warm_up(**_: object) -> None:
    """Each worker child does the apps' warm-up as it starts, not on its first
    task (the embedding model takes 10-20 s to load on 2 cores)."""
    from kimberly import hooks

    hooks.run_warmups(in_thread=True)
