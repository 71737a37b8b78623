import time

from django.apps import AppConfig


class KimberlyConfig(AppConfig):
    name = "kimberly"
    verbose_name = "Kimberly"
    started_at: float = time.monotonic()

    def ready(self) -> None:
        # Bind shared tasks to our Celery app in every Django process. Not done in
        # kimberly/__init__.py: `python -m kimberly.runtime` must not pick a
        # settings module for the commands it runs.
        from kimberly.celery import app  # noqa: F401
