"""Test settings: base plus speed-only overrides. Same real PostgreSQL, Valkey and S3."""

from __future__ import annotations

import os
import secrets

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("REDIS_CACHE_DB", "14")
os.environ.setdefault("REDIS_BROKER_DB", "15")
# In-process test workers must not bind the metrics port (tests that need it set it).
os.environ.setdefault("WORKER_METRICS_PORT", "0")

from kimberly.settings.base import *  # noqa: F403

# Hashing passwords with PBKDF2 dominates test time; tests don't test the hasher.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# The same S3 as `make run`, another bucket (the root conftest creates it), and
# under it a prefix per test run, which the run deletes at its end: two runs can
# share the embedded S3 without seeing or deleting each other's objects.
TEST_STORAGE_BUCKET_NAME = os.environ.get("TEST_STORAGE_BUCKET_NAME", "kimberly-test")
TEST_STORAGE_LOCATION = f"test-run-{os.getpid()}-{secrets.token_hex(4)}"
STORAGE_BUCKET_NAME = STORAGE_BUCKET_NAME and TEST_STORAGE_BUCKET_NAME  # noqa: F405
STORAGES = {
    "default": {
        **STORAGES["default"],  # noqa: F405
        "OPTIONS": {
            **STORAGES["default"]["OPTIONS"],  # noqa: F405
            "bucket_name": STORAGE_BUCKET_NAME,
            "location": TEST_STORAGE_LOCATION,
        },
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
os.makedirs(STATIC_ROOT, exist_ok=True)  # noqa: F405 - whitenoise scans it
# The console shows warnings; every record at the production level (INFO) also
# goes to one file per test run, which the root conftest scans when the run ends
# for content and secrets the tests stored (tests/log_canary.py). The worker and
# beat processes tests start inherit the variable and append to the same file.
TEST_LOG_FILE = os.environ.setdefault(
    "TEST_LOG_FILE",
    str(VAR_DIR / "log" / f"test-run-{os.getpid()}.jsonl"),  # noqa: F405
)
os.makedirs(os.path.dirname(TEST_LOG_FILE), exist_ok=True)
LOGGING["handlers"]["stdout"]["level"] = "WARNING"  # type: ignore[index]  # noqa: F405
LOGGING["handlers"]["test_file"] = {  # type: ignore[index]  # noqa: F405
    "class": "logging.FileHandler",
    "filename": TEST_LOG_FILE,
    "encoding": "utf-8",
    "formatter": "json",
    "filters": ["context"],
}
LOGGING["root"] = {"handlers": ["stdout", "test_file"], "level": "INFO"}  # noqa: F405
ALLOWED_HOSTS = [*ALLOWED_HOSTS, "testserver"]  # noqa: F405
# Lets two test runs share the embedded servers without sharing a test database.
DATABASES["default"]["TEST"] = {  # noqa: F405
    "NAME": os.environ.get("TEST_DATABASE_NAME", "test_kimberly")
}
# The suite and the contract run (schemathesis: hundreds of requests per
# operation, all from one user at 127.0.0.1) stay far below the API rate limits;
# tests/test_ratelimits.py sets small ones of its own.
RATE_LIMITS = {
    group: {**limits, "user": 1_000_000, "ip": 1_000_000}
    for group, limits in RATE_LIMITS.items()  # noqa: F405
}
