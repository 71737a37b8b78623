import time

from django.apps import AppConfig


class KimberlyConfig(AppConfig):
    name = "kimberly"
    verbose_name = "Kimberly"
    started_at: float = time.monotonic()
