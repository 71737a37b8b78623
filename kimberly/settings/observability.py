"""What the alert rules and dashboards (deploy/prometheus, deploy/grafana) read
besides the metrics themselves: capacities and windows only a deployer knows."""

from __future__ import annotations

from kimberly.env import env_int, env_opt

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
