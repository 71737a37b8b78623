"""Settings of the privacy app: export and erasure (imported by base.py)."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from kimberly.env import env_int

# --- Export (GDPR: POST /v1/user/export) -----------------------------------------
# A new export request within this many hours of the last one that did not fail
# is 429 export_cooldown (with Retry-After).
EXPORT_COOLDOWN_HOURS = env_int("EXPORT_COOLDOWN_HOURS", 24)
# A finished export's zip is deleted from object storage after this many hours
# (the periodic CRON_EXPORT_EXPIRE job); the row stays, with status "expired".
EXPORT_KEEP_HOURS = env_int("EXPORT_KEEP_HOURS", 72)
# Lifetime in seconds of the signed download_url of a finished export.
EXPORT_URL_EXPIRE_SECONDS = env_int("EXPORT_URL_EXPIRE_SECONDS", 300)
if EXPORT_COOLDOWN_HOURS < 0 or EXPORT_KEEP_HOURS < 1:
    raise ImproperlyConfigured(
        "EXPORT_COOLDOWN_HOURS must be 0 or more and EXPORT_KEEP_HOURS at least 1"
    )
if EXPORT_URL_EXPIRE_SECONDS < 1:
    raise ImproperlyConfigured("EXPORT_URL_EXPIRE_SECONDS must be positive")
# --- end of export settings ------------------------------------------------------
