"""gunicorn settings (env-overridable). One image serves web, worker and beat."""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
worker_class = "gthread"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = 20
keepalive = int(
    os.environ.get("GUNICORN_KEEPALIVE", "75")
)  # behind a proxy that reuses connections
accesslog = None  # the app logs each request as JSON with its request id


def _json_logging() -> dict[str, object]:
    """gunicorn's own lines (boot, signals, worker timeouts) as JSON on stderr,
    in the format of the application's (settings LOGGING)."""
    from kimberly.settings.observability import LOGGING

    handler = {
        "class": "logging.StreamHandler",
        "formatter": "json",
        "filters": ["context"],
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": LOGGING["filters"],
        "formatters": LOGGING["formatters"],
        "handlers": {"console": handler, "error_console": handler},
        "root": {"level": "INFO", "handlers": ["console"]},
        "loggers": {
            "gunicorn.error": {
                "level": "INFO",
                "handlers": ["error_console"],
                "propagate": False,
            },
        },
    }


logconfig_dict = _json_logging()
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def child_exit(server: object, worker: object) -> None:
    # Prometheus multiprocess mode: drop a dead worker's live gauges.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]


def post_worker_init(worker: object) -> None:
    # The apps' warm-up (the embedding model, ~10 s) before the first request,
    # not during it; a failing warm-up is logged and never takes the web down.
    from kimberly import hooks

    hooks.run_warmups()


def worker_exit(server: object, worker: object) -> None:
    # Spans still batched go out before the worker does (settings.OTEL_ENABLED).
    from kimberly import tracing

    tracing.shutdown()
