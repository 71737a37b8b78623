"""Settings of memory imports (imported by base.py)."""

from __future__ import annotations

from kimberly.env import env_int

# Largest import file (multipart upload); bigger is a 413 payload_too_large. A
# JSON-body import is bounded by DATA_UPLOAD_MAX_MEMORY_SIZE instead.
IMPORT_MAX_BYTES = env_int("IMPORT_MAX_BYTES", 50 * 1024 * 1024)
# Imports of at most this many records run in the request (201, all or nothing);
# larger ones are stored and run by a Celery job (202, progress in GET).
IMPORT_SYNC_MAX_RECORDS = env_int("IMPORT_SYNC_MAX_RECORDS", 500)
# Records per transaction of an import: one quota update, one INSERT, one audit
# chain lock per batch.
IMPORT_BATCH_SIZE = env_int("IMPORT_BATCH_SIZE", 250)
