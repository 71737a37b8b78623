"""The Celery app: configured from Django settings (CELERY_*), tasks autodiscovered."""

import logging
import os
import threading

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kimberly.settings.base")

app = Celery("kimberly")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Connects the signal handlers that serve worker and beat metrics on their port.
import kimberly.worker_metrics  # noqa: E402, F401


@worker_process_init.connect
def _warm_embedding_model(**_: object) -> None:
    """Each worker child loads the embedding model as it starts, not on its first
    task (10-20 s on 2 cores: the first write it embeds would wait that long).
    In a thread: the child must report ready within worker_proc_alive_timeout."""
    if os.environ.get("EMBEDDING_WARMUP", "1") != "1":
        return
    from django.conf import settings

    if settings.EMBEDDING_PROVIDER != "local":
        return

    def load() -> None:
        from memory import embeddings

        try:
            embeddings.embed_texts(["warm-up"])
        except Exception:
            logging.getLogger(__name__).exception("embedding warm-up failed")

    threading.Thread(target=load, name="embedding-warmup", daemon=True).start()
