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

# --- Retention (GET/PUT /v1/compliance/retention-policies) -----------------------
# System defaults in days per data type; an admin may override each in the admin
# (Retention policies with no user), and a user may only choose a shorter value.
# retrieval_records and telemetry (meditation score records) keep their older
# settings' names as the defaults, RETRIEVAL_RECORDS_DAYS and MEDITATION_RECORDS_DAYS
# (base.py reads them; privacy/retention/policies.py looks them up there).
RETENTION_DEFAULT_DAYS = {
    "chat_messages": env_int("RETENTION_CHAT_MESSAGES_DAYS", 365),
    "short_term_memories": env_int("RETENTION_SHORT_TERM_MEMORIES_DAYS", 30),
    "exports": env_int("RETENTION_EXPORTS_DAYS", 30),
    "audit_events": env_int("RETENTION_AUDIT_EVENTS_DAYS", 730),
}
if min(RETENTION_DEFAULT_DAYS.values()) < 1:
    raise ImproperlyConfigured("every RETENTION_*_DAYS must be at least 1")
# A user's own value for audit_events may not be shorter than this (the audit
# trail holds their proof of consent); the system's may.
RETENTION_AUDIT_EVENTS_MIN_DAYS = env_int("RETENTION_AUDIT_EVENTS_MIN_DAYS", 90)
# The compliance check allows this many hours past a window before it calls the
# retention unenforced (the enforcement runs nightly, CRON_RETENTION_ENFORCE).
RETENTION_CHECK_SLACK_HOURS = env_int("RETENTION_CHECK_SLACK_HOURS", 36)
# --- end of retention settings ---------------------------------------------------
