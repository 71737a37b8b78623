#!/usr/bin/env sh
# Runs inside `python -m kimberly.runtime exec`, so DATABASE_URL/REDIS_URL/AWS_* are set.
set -eu
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export PROMETHEUS_MULTIPROC_DIR="$PWD/var/prometheus"
# web adds up the files at the top; each worker and beat their own (Procfile).
rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
for role in worker embedding meditation agents beat; do mkdir -p "$PROMETHEUS_MULTIPROC_DIR/$role"; done

# Deployments run a worker per queue (the Procfile's embedding and meditation
# entries, deploy/k8s, fly.toml). On a 2-core machine two more Celery workers,
# each loading the embedding model, only compete for the same cores and memory:
# here one worker takes the default, embedding and meditation queues, and agent
# tasks keep their own (a long one never holds the rest back). `honcho start`
# with no names (and WORKER_QUEUES unset) runs the split layout instead.
export WORKER_QUEUES="${WORKER_QUEUES:-celery,embedding,meditation}"

python manage.py migrate --noinput -v0
python manage.py collectstatic --noinput -v0
python manage.py demo_user

cat <<INFO

Kimberly is starting:
  web     http://127.0.0.1:8000  (web UI /, API /v1, docs /v1/docs, admin /admin, metrics /metrics)
  worker  Celery worker of the queues $WORKER_QUEUES (broker: REDIS_URL/1),
          metrics http://127.0.0.1:9808/metrics
  agents  Celery worker for agent tasks (queue "agents"; coder runs in bubblewrap),
          metrics http://127.0.0.1:9810/metrics
  beat    Celery beat, schedule from settings synced into django-celery-beat,
          metrics http://127.0.0.1:9809/metrics
  data    embedded PostgreSQL, Valkey and S3 (SeaweedFS) unless configured
          (URLs, passwords, S3 keys: .venv/bin/python -m kimberly.runtime status)
Ctrl-C stops everything.

INFO
exec honcho start web worker agents beat
