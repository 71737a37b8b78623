"""Logs and traces (imported by base.py).

Logs: one JSON object a line on stdout, with the request or task id (and the
trace and span ids when tracing is on); see kimberly/logging.py for what a line
carries and what it never does. Traces: OpenTelemetry behind OTEL_ENABLED,
exported over OTLP/HTTP; the endpoint, service name, headers and the like come
from the standard OTEL_* variables, which the SDK reads itself
(kimberly/tracing.py, deploy/observability/README.md).
"""

from __future__ import annotations

from kimberly.env import env_bool, env_str

LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "kimberly.logging.ContextFilter"}},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "ts", "levelname": "level", "name": "logger"},
        }
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        # Django's request logger repeats what the access log says, with the body
        # of the exception; keep it at WARNING so 4xx noise stays out.
        "django.request": {"level": "ERROR"},
        # At DEBUG it logs every SQL statement with its parameters: user text.
        "django.db.backends": {"level": "INFO"},
        # At INFO they log every outgoing URL: webhook destinations can carry
        # a secret in theirs.
        "httpx2": {"level": "WARNING"},
        "httpcore2": {"level": "WARNING"},
    },
}

# --- Traces ----------------------------------------------------------------------
OTEL_ENABLED = env_bool("OTEL_ENABLED", False)
