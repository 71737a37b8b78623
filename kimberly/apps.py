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
        # Row-level security: every connection starts with no scope.
        from django.db.backends.signals import connection_created

        from kimberly import hooks, rls
        from kimberly.celery import app  # noqa: F401
        from kimberly.system_metrics import BrokerCollector, PostgresCollector

        connection_created.connect(rls.on_connection_created, dispatch_uid="rls")
        # PostgreSQL's and the broker's gauges on the web's /metrics.
        hooks.register_store_collector(PostgresCollector(), user_rows=False)
        hooks.register_store_collector(BrokerCollector(), user_rows=False)
