"""Files: object storage through django-storages' S3 backend, static files (base.py).

Every file the product keeps goes to one S3-compatible bucket: the embedded
SeaweedFS (kimberly.runtime) when the environment names no bucket, MinIO or AWS
S3 when AWS_STORAGE_BUCKET_NAME (and AWS_S3_ENDPOINT_URL for non-AWS) is set.
With neither (a bare `manage.py check`, the image build), settings still load:
the backend has no bucket, kimberly.storage refuses every operation with
StorageNotConfigured and readiness reports storage down. There is no local-disk
fallback: it would hide in development what production does.
"""

from __future__ import annotations

from typing import Any

from botocore.config import Config
from django.core.exceptions import ImproperlyConfigured

from kimberly import runtime
from kimberly.env import env_float, env_int, env_opt, env_str

STATIC_ROOT = env_str("STATIC_ROOT", str(runtime.VAR_DIR / "static"))
STATIC_URL = "/static/"

# Named in the environment: all of AWS_* come from there. Unnamed: the embedded
# S3 if it runs (`runtime exec` also puts the same values in the environment).
_named = env_opt("AWS_STORAGE_BUCKET_NAME")
_embedded = {} if _named else runtime.discovered_s3_env()


def _aws(name: str) -> str | None:
    return env_opt(name) if _named else _embedded.get(name)


STORAGE_BUCKET_NAME = _named or _embedded.get("AWS_STORAGE_BUCKET_NAME")
STORAGE_ENDPOINT_URL = _aws("AWS_S3_ENDPOINT_URL")
# Lifetime of a signed download URL, in seconds.
STORAGE_URL_EXPIRE_SECONDS = env_int("STORAGE_URL_EXPIRE_SECONDS", 300)

STORAGES: dict[str, dict[str, Any]] = {
    "default": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": STORAGE_BUCKET_NAME,
            "endpoint_url": STORAGE_ENDPOINT_URL,
            "region_name": env_opt("AWS_S3_REGION_NAME")
            or ("us-east-1" if STORAGE_ENDPOINT_URL else None),
            "access_key": _aws("AWS_ACCESS_KEY_ID"),
            "secret_key": _aws("AWS_SECRET_ACCESS_KEY"),
            # Objects are private: reads go through signed, short-lived URLs.
            "default_acl": None,
            "querystring_auth": True,
            "querystring_expire": STORAGE_URL_EXPIRE_SECONDS,
            "file_overwrite": False,
            # Replaces django-storages' own Config, so it carries signature and
            # addressing too. Fail fast: a dead S3 must cost a request (and the
            # readiness probe) about two seconds, not botocore's minutes of retries.
            "client_config": Config(
                signature_version="s3v4",
                # SeaweedFS and MinIO serve buckets by path, not by host name.
                s3={"addressing_style": "path" if STORAGE_ENDPOINT_URL else "auto"},
                connect_timeout=env_float("STORAGE_CONNECT_TIMEOUT_SECONDS", 1.0),
                read_timeout=env_float("STORAGE_READ_TIMEOUT_SECONDS", 5.0),
                retries={
                    "max_attempts": env_int("STORAGE_MAX_ATTEMPTS", 2),
                    "mode": "standard",
                },
            ),
        },
    },
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Attachments (POST /v1/attachments): the largest file accepted (bigger is 413),
# and about how many characters of its text go into each memory.
ATTACHMENT_MAX_BYTES = env_int("ATTACHMENT_MAX_BYTES", 10 * 1024 * 1024)
ATTACHMENT_CHUNK_CHARS = env_int("ATTACHMENT_CHUNK_CHARS", 1000)
# Text one attachment may hold, and pages of a PDF: a few KB of compressed PDF can
# expand into megabytes of text (then 413 document_too_large).
ATTACHMENT_MAX_TEXT_CHARS = env_int("ATTACHMENT_MAX_TEXT_CHARS", 1_000_000)
ATTACHMENT_MAX_PDF_PAGES = env_int("ATTACHMENT_MAX_PDF_PAGES", 2000)
if not 200 <= ATTACHMENT_CHUNK_CHARS <= 16000:
    # Past 16000 characters a chunk could pass a memory's 64 KiB content limit.
    raise ImproperlyConfigured("ATTACHMENT_CHUNK_CHARS must be from 200 to 16000")
if ATTACHMENT_MAX_BYTES < 1:
    raise ImproperlyConfigured("ATTACHMENT_MAX_BYTES must be positive")
