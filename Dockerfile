# syntax=docker/dockerfile:1
# One image, three roles: web (the default CMD), worker and beat (the platform
# overrides the command; see fly.toml and deploy/k8s/). Runs as a non-root user.
#
#   docker build -t kimberly:0.1.0 .
#   docker build --build-arg PIP_EXTRA_INDEX_URL=<index with the torch CPU wheel> -t kimberly:0.1.0 .
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# torch==2.13.0 is installed from requirements.txt as pinned. The build must
# resolve the CPU wheel (2.13.0+cpu, which satisfies the ==2.13.0 pin and wins over
# the plain 2.13.0 as the higher version): without it, pip pulls the CUDA build and
# gigabytes of GPU libraries this image never uses. The operator supplies an index
# that carries the CPU wheel as a build arg (pip reads PIP_EXTRA_INDEX_URL). It is
# not part of the runtime environment, but build args are recorded in the image
# history: never put credentials in it.
ARG PIP_EXTRA_INDEX_URL

# bubblewrap: the coder agent's sandbox (agents/sandbox/), which runs the image's
# own /usr/local/bin/python3.11 with no network in unprivileged user namespaces.
# The runtime must allow them for uid 10001: the kernel (user.max_user_namespaces
# > 0), seccomp (Docker's and containerd's default profiles refuse unshare/clone of
# namespaces without CAP_SYS_ADMIN: a profile that allows them, or unconfined),
# AppArmor (Ubuntu 23.10+ hosts restrict unprivileged user namespaces: a profile
# for bwrap, or unconfined) and a /proc it may mount again (Docker masks paths of
# /proc: --security-opt systempaths=unconfined; Kubernetes: procMount Unmasked).
# Fly's Firecracker VMs need none of this. `sandbox_check()` says what fails.
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.txt ./
RUN pip install -r requirements.txt

RUN groupadd --system --gid 10001 kimberly \
    && useradd --system --uid 10001 --gid kimberly --home-dir /home/kimberly \
       --create-home --shell /usr/sbin/nologin kimberly

# Before every command (web, worker, beat, release/migrate, ./cli ...): refuse to
# run without external stores, because manage.py starts throwaway embedded
# PostgreSQL/Valkey servers when DATABASE_URL or REDIS_URL is missing, and a
# migration or command would then silently act on an empty scratch database. Then
# clear the Prometheus multiprocess files a previous run of this container left.
COPY --chmod=0755 <<'EOF' /usr/local/bin/kimberly-entrypoint
#!/bin/sh
set -eu
if [ -z "${DATABASE_URL:-}" ] || [ -z "${REDIS_URL:-}" ]; then
    echo "kimberly: set DATABASE_URL and REDIS_URL (plain variables, not *_FILE);" \
         "the container never starts embedded servers." >&2
    exit 64
fi
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
    find "$PROMETHEUS_MULTIPROC_DIR" -maxdepth 1 -type f -name '*.db' -delete
fi
exec "$@"
EOF

# The code is owned by root and read-only to the app user; only var/ (scratch
# files such as Prometheus' multiprocess directory) is writable. Every file the
# product keeps goes to the S3 bucket named by AWS_STORAGE_BUCKET_NAME.
COPY . .
RUN mkdir -p /app/var && chown -R kimberly:kimberly /app/var

ENV DJANGO_SETTINGS_MODULE=kimberly.settings.base \
    HF_HUB_OFFLINE=1 \
    GUNICORN_BIND=0.0.0.0:8000 \
    WORKER_METRICS_ADDR=0.0.0.0 \
    STATIC_ROOT=/app/static

# Static files are baked into the image (whitenoise serves them). `python -m django`,
# not manage.py: manage.py would start embedded servers. Settings only need a
# SECRET_KEY to load; this dummy one exists for this step only and is not kept.
RUN SECRET_KEY=collectstatic-build-only python -m django collectstatic --noinput -v0

# gunicorn and the Celery worker run several processes: /metrics (web) and the
# worker's metrics port add up all of them from here (the entrypoint creates and
# clears this directory; each container has its own). Set after collectstatic,
# which has no use for it.
ENV PROMETHEUS_MULTIPROC_DIR=/tmp/kimberly-prometheus

USER 10001:10001
# 8000: web (gunicorn). 9808: Prometheus metrics of worker and beat
# (WORKER_METRICS_PORT; kimberly/worker_metrics.py).
EXPOSE 8000 9808
# No HEALTHCHECK: the same image runs worker and beat, which serve no API.
# Orchestrators probe the web role on /v1/health and /v1/health/ready.
ENTRYPOINT ["/usr/local/bin/kimberly-entrypoint"]
CMD ["gunicorn", "kimberly.wsgi", "--config", "python:kimberly.gunicorn_conf"]
