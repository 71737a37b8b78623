"""Kimberly settings: everything comes from the environment (see .env.example)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured

from kimberly import runtime
from kimberly.env import (
    env_bool,
    env_float,
    env_int,
    env_list,
    env_networks,
    env_opt,
    env_str,
)

# Lets runtime code write ModelAdmin[Model], QuerySet[Model] etc. for mypy.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = runtime.VAR_DIR

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_opt("SECRET_KEY") or ""
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY (or SECRET_KEY_FILE) is required when DEBUG is off"
        )
    SECRET_KEY = "insecure-debug-only-key"  # noqa: S105 - only ever with DEBUG on
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Off for plain-http local runs; deployments behind TLS turn them on (fly.toml does).
SECURE_COOKIES = env_bool("SECURE_COOKIES", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SECURE_COOKIES
# Strict-Transport-Security on HTTPS responses: off (0) unless a deployment that
# serves only HTTPS turns it on (the production overlay and fly.toml: a year).
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_REDIRECT_EXEMPT = [r"^v1/health"]

INSTALLED_APPS = [
    "django_prometheus",
    # Before django.contrib.*: its management commands (createsuperuser,
    # changepassword under the row-level-security maintenance scope) win.
    "kimberly",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "knox",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "users",
    "audit",
    "memory",
    "chat",
    "agents",
    "billing",
    "privacy",
    "backups",
    "django_htmx",
    "csp",
    "web",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "kimberly.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "kimberly.middleware.BodyLimitMiddleware",  # before anything reads a body
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "kimberly.middleware.RlsMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "kimberly.urls"
# Largest JSON body: 500 user vectors of 384 floats fit; memories are capped at 64 KiB.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 8 * 1024 * 1024)
WSGI_APPLICATION = "kimberly.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Data stores -------------------------------------------------------------
# No DATABASE_URL / REDIS_URL: use the embedded servers that `make run`/`make test`
# (kimberly.runtime) started. Reading settings never starts a server.
_embedded = runtime.discovered_env()
DATABASE_URL = env_opt("DATABASE_URL") or _embedded.get(
    "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/kimberly"
)
REDIS_URL = env_opt("REDIS_URL") or _embedded.get("REDIS_URL", "redis://127.0.0.1:6379")
REDIS_URL = REDIS_URL.rstrip("/")

DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        engine="django_prometheus.db.backends.postgresql",
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
        # Off: the check is a SELECT 1 before every request (16% of a POST's
        # samples under load); a broken connection is closed on error anyway.
        conn_health_checks=env_bool("DB_CONN_HEALTH_CHECKS", False),
    )
}
# pgvector 0.8: HNSW scans keep walking the graph until enough rows pass the
# per-user filter (they only affect queries that use the HNSW index).
DATABASES["default"].setdefault("OPTIONS", {})["options"] = (
    "-c hnsw.iterative_scan=relaxed_order -c hnsw.ef_search=100"
)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_CACHE_DB = env_int("REDIS_CACHE_DB", 0)
CACHES = {
    "default": {
        "BACKEND": "django_prometheus.cache.backends.redis.RedisCache",
        "LOCATION": f"{REDIS_URL}/{REDIS_CACHE_DB}",
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            # Fail fast: readiness and request paths must not hang on a dead Redis.
            "SOCKET_CONNECT_TIMEOUT": env_float("REDIS_CONNECT_TIMEOUT", 1.0),
            "SOCKET_TIMEOUT": env_float("REDIS_SOCKET_TIMEOUT", 1.0),
        },
        "KEY_PREFIX": "kb",
    }
}

# --- Celery ------------------------------------------------------------------
CELERY_BROKER_URL = (
    env_opt("CELERY_BROKER_URL") or f"{REDIS_URL}/{env_int('REDIS_BROKER_DB', 1)}"
)
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True  # a task killed mid-run is redelivered, not lost
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 600)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 540)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 3600,
    "socket_connect_timeout": 1,
    "socket_timeout": 5,
}
# A request that enqueues work must not hang on a dead broker: fail fast, and let
# the periodic sweeps pick the work up.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.1,
    "interval_max": 0.2,
}
CELERY_BEAT_SCHEDULER = "kimberly.beat:SeededDatabaseScheduler"
CELERY_TIMEZONE = "UTC"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False  # keep our JSON log format in workers
# Workers and beat serve Prometheus metrics here (kimberly/worker_metrics.py); the
# image listens on 0.0.0.0. Port 0: no endpoint.
WORKER_METRICS_PORT = env_int("WORKER_METRICS_PORT", 9808)
WORKER_METRICS_ADDR = env_str("WORKER_METRICS_ADDR", "127.0.0.1")

# The periodic tasks (CELERY_BEAT_SCHEDULE), the queues and the routes to them.
from kimberly.settings.beat import *  # noqa: E402, F403
from kimberly.settings.queues import *  # noqa: E402, F403

# --- Auth ----------------------------------------------------------------------
AUTH_USER_MODEL = "users.User"
AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
TOKEN_TTL_SECONDS = env_int("TOKEN_TTL_SECONDS", 7 * 24 * 3600)
REST_KNOX = {
    "TOKEN_TTL": timedelta(seconds=TOKEN_TTL_SECONDS),
    "AUTH_HEADER_PREFIX": "Bearer",
    "AUTO_REFRESH": False,
}
# Login throttling (fixed windows in Redis): attempts per window.
LOGIN_RATE_PER_IP = env_int("LOGIN_RATE_PER_IP", 20)
LOGIN_RATE_PER_EMAIL = env_int("LOGIN_RATE_PER_EMAIL", 5)
LOGIN_RATE_WINDOW_SECONDS = env_int("LOGIN_RATE_WINDOW_SECONDS", 60)
SIGNUP_RATE_PER_IP = env_int("SIGNUP_RATE_PER_IP", 20)
# Proxies (addresses/CIDRs) whose forwarding headers are believed: only a request
# whose REMOTE_ADDR is one of them has its client address taken from
# CLIENT_IP_HEADER (a META key such as HTTP_FLY_CLIENT_IP) or, when that is unset,
# from X-Forwarded-For (the right-most address that is not a trusted proxy).
# Empty: REMOTE_ADDR, always.
TRUSTED_PROXIES = env_networks("TRUSTED_PROXIES")
CLIENT_IP_HEADER = env_opt("CLIENT_IP_HEADER")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "users.authentication.BearerTokenAuthentication"
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # Per user and per IP on every authenticated endpoint (settings/ratelimits.py).
    "DEFAULT_THROTTLE_CLASSES": ["kimberly.api.throttle.ApiRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["kimberly.api.parsers.BoundedJSONParser"],
    "EXCEPTION_HANDLER": "kimberly.api.exceptions.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "kimberly.api.schema.KimberlyAutoSchema",
    "UNAUTHENTICATED_USER": None,
    # ASCII-escaped JSON: an error echoing user text with a lone surrogate in it
    # must still render (UTF-8 cannot encode one).
    "UNICODE_JSON": False,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Kimberly API",
    "DESCRIPTION": "Memory Manager of the Kimberly personal assistant.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/v1",
    # Request bodies get their own components, so inputs can say what they refuse
    # (additionalProperties: false, minLength) without changing the responses.
    "COMPONENT_SPLIT_REQUEST": True,
    # Served from the package, not a CDN: the docs page works on a closed network.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "ImportFormatEnum": "memory.imports.models.MemoryImport.Format",
        "ImportStatusEnum": "memory.imports.models.MemoryImport.State",
        # One name for the tier choices, whether a field calls them type or tier.
        "TierEnum": "memory.constants.Tier",
        "AttachmentTypeEnum": "memory.attachments.extract.KIND_NAMES",
        "AttachmentStatusEnum": "memory.attachments.selectors.STATUSES",
        "MeditationStatusEnum": "memory.models.MeditationRun.State",
        "AgentTaskStatusEnum": "agents.models.AgentTask.Status",
        "ReminderStatusEnum": "agents.models.Reminder.Status",
        "ReminderWebhookEnum": "agents.models.Reminder.Webhook",
        "EventSourceEnum": "agents.models.Event.Source",
        "SchedulerSourceEnum": "agents.kinds.scheduler.SOURCES",
        "ComplianceScopeEnum": "privacy.retention.policies.SCOPES",
    },
}

# --- Memory --------------------------------------------------------------------
# After the user withdraws sensitive_memory, their sensitive items are hidden at
# once and deleted this much later (unless they grant it again first).
CONSENT_PURGE_GRACE_HOURS = env_int("CONSENT_PURGE_GRACE_HOURS", 72)
# Default quota per tier in bytes (a plan or an operator override wins); writes may
# burst to QUOTA_HARD_LIMIT_RATIO x quota, meditation archives back under it.
MEMORY_QUOTA_DEFAULTS = {
    "short-term": env_int("QUOTA_SHORT_TERM_BYTES", 512 * 1024),
    "long-term": env_int("QUOTA_LONG_TERM_BYTES", 2 * 1024 * 1024),
    "permanent": env_int("QUOTA_PERMANENT_BYTES", 10 * 1024 * 1024),
}
QUOTA_HARD_LIMIT_RATIO = env_float("QUOTA_HARD_LIMIT_RATIO", 1.25)
if QUOTA_HARD_LIMIT_RATIO < 1.0:
    raise ImproperlyConfigured("QUOTA_HARD_LIMIT_RATIO must be >= 1.0")
IDEMPOTENCY_TTL_HOURS = env_int("IDEMPOTENCY_TTL_HOURS", 24)
# Short-term context served from Redis: how many items, and how long a rebuilt
# copy is trusted before it is rebuilt from PostgreSQL again.
SHORT_TERM_CONTEXT_LIMIT = env_int("SHORT_TERM_CONTEXT_LIMIT", 50)
SHORT_TERM_CACHE_TTL_SECONDS = env_int("SHORT_TERM_CACHE_TTL_SECONDS", 300)

# Embeddings: "local" (MiniLM on the Celery workers) or "disabled" (lexical only).
EMBEDDING_PROVIDER = env_str("EMBEDDING_PROVIDER", "local")
if EMBEDDING_PROVIDER not in {"local", "disabled"}:
    raise ImproperlyConfigured("EMBEDDING_PROVIDER must be local or disabled")
# Texts per model call (the drain claims this many queued memories at a time),
# and texts per forward pass inside a call (sorted by length, so short texts are
# padded only to their neighbours). bench/reports/embed_import.md
EMBEDDING_BATCH_SIZE = env_int("EMBEDDING_BATCH_SIZE", 128)
EMBEDDING_MODEL_BATCH = env_int("EMBEDDING_MODEL_BATCH", 8)
# Under a stream of writes the drain waits this long for a full batch (the first
# batch of a burst never waits). bench/reports/embed_import.md
EMBEDDING_LINGER_SECONDS = env_float("EMBEDDING_LINGER_SECONDS", 0.2)
# torch threads per process. 1: the worker runs CELERY_CONCURRENCY processes and
# gunicorn its own next to them; two threads each on 2 cores spin against each
# other (a batch of two: 64 -> 6 texts/s measured). bench/reports/embed_import.md
EMBEDDING_THREADS = env_int("EMBEDDING_THREADS", 1)
# Retrieval: final = lambda*relevance + (1-lambda)*score + FRESHNESS_WEIGHT*freshness.
# SPEC adds freshness at weight 1; measured on LongMemEval that lets recency
# outrank relevance (S-mini hit@5 0.85 -> 0.69), so the default is 0.1
# (bench/reports/retrieval_quality.md). Semantic share 0.7 is the one fusion
# that beat lexical-only and semantic-only on every headline metric of both sets.
# lambda 0.85: at 0.5 the v1 meditation scores (query-independent priors) cost
# recall@5 after a run (S-mini 0.779 -> 0.755); at 0.85 nothing is lost and
# recall before meditation is higher too (bench/reports/meditation_quality.md).
RETRIEVAL_LAMBDA = env_float("RETRIEVAL_LAMBDA", 0.85)
RETRIEVAL_FRESHNESS_WEIGHT = env_float("RETRIEVAL_FRESHNESS_WEIGHT", 0.1)
RETRIEVAL_FRESHNESS_DAYS = env_float("RETRIEVAL_FRESHNESS_DAYS", 30.0)
RETRIEVAL_CANDIDATES = env_int("RETRIEVAL_CANDIDATES", 50)
# Read provenance (up to RETRIEVAL_CANDIDATES rows per query) is kept this many
# days: meditation's predictive value counts the retrievals of this window, and
# older rows are pruned nightly (CRON_RETENTION_ENFORCE; a user may keep them
# shorter: privacy/retention).
RETRIEVAL_RECORDS_DAYS = env_int("RETRIEVAL_RECORDS_DAYS", 30)
if RETRIEVAL_RECORDS_DAYS < 1:
    raise ImproperlyConfigured("RETRIEVAL_RECORDS_DAYS must be at least 1")
QUERY_EMBEDDING_CACHE_SECONDS = env_int("QUERY_EMBEDDING_CACHE_SECONDS", 24 * 3600)
# Fusion of lexical and semantic evidence: "weighted" (RETRIEVAL_SEMANTIC_WEIGHT on
# cosine similarity, the rest on max-normalised ts_rank_cd) or "rrf".
RETRIEVAL_FUSION = env_str("RETRIEVAL_FUSION", "weighted")
RETRIEVAL_SEMANTIC_WEIGHT = env_float("RETRIEVAL_SEMANTIC_WEIGHT", 0.7)
# Vector search: "exact" per-user scan, "hnsw" iterative index scan, or "auto"
# (exact up to RETRIEVAL_EXACT_MAX_VECTORS of the user's vectors, HNSW above).
RETRIEVAL_VECTOR_STRATEGY = env_str("RETRIEVAL_VECTOR_STRATEGY", "auto")
RETRIEVAL_EXACT_MAX_VECTORS = env_int("RETRIEVAL_EXACT_MAX_VECTORS", 500)
if RETRIEVAL_FUSION not in {"weighted", "rrf"}:
    raise ImproperlyConfigured("RETRIEVAL_FUSION must be weighted or rrf")
if RETRIEVAL_VECTOR_STRATEGY not in {"auto", "exact", "hnsw"}:
    raise ImproperlyConfigured("RETRIEVAL_VECTOR_STRATEGY must be auto, exact or hnsw")

# Meditation: short-term lifetime, promotion threshold, purge grace, per-run cap.
MEDITATION_SHORT_TERM_HOURS = env_int("MEDITATION_SHORT_TERM_HOURS", 24)
MEDITATION_PROMOTE_THRESHOLD = env_float("MEDITATION_PROMOTE_THRESHOLD", 0.6)
MEDITATION_PURGE_GRACE_DAYS = env_int("MEDITATION_PURGE_GRACE_DAYS", 30)
MEDITATION_MAX_CHANGES = env_int("MEDITATION_MAX_CHANGES", 5000)
# A stored score is rewritten only when it moved at least this much.
MEDITATION_SCORE_EPSILON = env_float("MEDITATION_SCORE_EPSILON", 0.005)
# Users per meditate_batch task of the nightly run (the workers share the batches).
MEDITATION_BATCH_USERS = env_int("MEDITATION_BATCH_USERS", 50)
# A user run still queued this long after it was created is sent again (a lost
# publish, a batch killed at its time limit); longer than a batch's time limit.
MEDITATION_STALE_MINUTES = env_int("MEDITATION_STALE_MINUTES", 90)
# Per-item score records (the "why" of each decision) are kept this many days;
# the runs themselves and the audit events of every change stay.
MEDITATION_RECORDS_DAYS = env_int("MEDITATION_RECORDS_DAYS", 14)

# --- Their own modules: chat, storage, imports, logs, traces and alert inputs ----
from kimberly.settings.agents import *  # noqa: E402, F403
from kimberly.settings.backups import *  # noqa: E402, F403
from kimberly.settings.chat import *  # noqa: E402, F403
from kimberly.settings.erasure import *  # noqa: E402, F403
from kimberly.settings.imports import *  # noqa: E402, F403
from kimberly.settings.keys import *  # noqa: E402, F403
from kimberly.settings.observability import *  # noqa: E402, F403
from kimberly.settings.privacy import *  # noqa: E402, F403
from kimberly.settings.ratelimits import *  # noqa: E402, F403
from kimberly.settings.storage import *  # noqa: E402, F403
from kimberly.settings.web import *  # noqa: E402, F403
from kimberly.settings.webhooks import *  # noqa: E402, F403

# --- I18N ----------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

PROMETHEUS_EXPORT_MIGRATIONS = False
os.environ.setdefault("HF_HUB_OFFLINE", "1")
