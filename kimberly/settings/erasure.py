"""Settings of account erasure (privacy/erasure; imported by base.py)."""

from __future__ import annotations

from kimberly.env import env_int

# The erasure job retries on a store that is down (Redis, S3) this many times,
# with exponential backoff up to ERASURE_RETRY_BACKOFF_MAX seconds between tries.
ERASURE_MAX_RETRIES = env_int("ERASURE_MAX_RETRIES", 8)
ERASURE_RETRY_BACKOFF_MAX = env_int("ERASURE_RETRY_BACKOFF_MAX", 600)
# Hard time limit of one erasure job (seconds).
ERASURE_TIME_LIMIT = env_int("ERASURE_TIME_LIMIT", 1800)
# The compliance check calls an erasure not finished this many hours after it
# was asked for overdue.
ERASURE_OVERDUE_HOURS = env_int("ERASURE_OVERDUE_HOURS", 24)
