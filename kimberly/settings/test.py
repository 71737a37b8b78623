"""Test settings: base plus speed-only overrides. Same real PostgreSQL and Valkey."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("REDIS_CACHE_DB", "14")
os.environ.setdefault("REDIS_BROKER_DB", "15")
# In-process test workers must not bind the metrics port (tests that need it set it).
os.environ.setdefault("WORKER_METRICS_PORT", "0")
os.environ.setdefault(
    "MEDIA_ROOT", str(Path(__file__).resolve().parents[2] / "var" / "test-media")
)

from kimberly.settings.base import *  # noqa: F403

# Hashing passwords with PBKDF2 dominates test time; tests don't test the hasher.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
os.makedirs(STATIC_ROOT, exist_ok=True)  # noqa: F405 - whitenoise scans it
LOGGING["root"]["level"] = "WARNING"  # type: ignore[index]  # noqa: F405
ALLOWED_HOSTS = [*ALLOWED_HOSTS, "testserver"]  # noqa: F405
# Lets two test runs share the embedded servers without sharing a test database.
DATABASES["default"]["TEST"] = {  # noqa: F405
    "NAME": os.environ.get("TEST_DATABASE_NAME", "test_kimberly")
}
