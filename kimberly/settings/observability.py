"""Logs, traces and what the alert rules read (imported by base.py).

Logs: one JSON object a line on stdout, with the request or task id (and the
trace and span ids when tracing is on); see kimberly/logging.py for what a line
carries and what it never does. Traces: OpenTelemetry behind OTEL_ENABLED,
exported over OTLP/HTTP; the endpoint, service name, headers and the like come
from the standard OTEL_* variables, which the SDK reads itself
(kimberly/tracing.py, deploy/observability/README.md). Alerts and dashboards
(deploy/prometheus, deploy/grafana) read, besides the metrics themselves,
capacities and windows only a deployer knows: they are at the end.
"""

from __future__ import annotations

from kimberly.env import env_bool, env_int, env_opt, env_str

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

# --- What the alert rules and dashboards read ---------------------------------
# Bytes of the volume PostgreSQL's data lives on (its PVC or disk size). 0: not
# known, and /metrics then exports no storage ratio (the storage alerts stay
# silent; deploy/prometheus/README.md says how to use postgres_exporter's or the
# node's filesystem metrics instead).
POSTGRES_STORAGE_BYTES = env_int("POSTGRES_STORAGE_BYTES", 0)
# The nightly meditation run should be done within this many seconds (the
# design's SLO: a configured window, e.g. 10 minutes); longer raises
# meditation_job_slow.
MEDITATION_WINDOW_SECONDS = env_int("MEDITATION_WINDOW_SECONDS", 600)
# Quota pressure counts users with any tier at or above these fractions of its
# quota (kimberly_quota_pressure_users{threshold}).
QUOTA_PRESSURE_THRESHOLDS = (0.8, 0.9)
# A bearer token the web's /metrics requires when set (Prometheus sends it with
# `authorization: {credentials: ...}`). Set it wherever the web's /metrics can be
# reached from outside: the Ingress and Fly's http_service route every path.
# The workers' and beat's metrics ports are never routed from outside.
METRICS_TOKEN = env_opt("METRICS_TOKEN")
