"""`backup restore KEY --yes`: put a backup back into the live database.

Order, each step only if the one before passed: no other session is connected
to the database (the writers are stopped: what they wrote after the safety
backup would be in neither copy, and a lock one of them holds would stall the
restore, whose own lock_timeout pg_restore's script resets; `--force` skips
this check); the dump is downloaded and its checksum checked; a fresh backup of the live database is taken (without
pruning: nothing is deleted on the way to a restore); the dump is restored in
one transaction (backups/services/restore.py says why in place); every Django
connection is closed (their sessions may cache plans of the dropped tables);
then the migrations are checked: a backup older than the code needs
`./cli migrate` afterwards, which the run reports as a failed check.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path

from django.db import DEFAULT_DB_ALIAS, connections

from backups.models import BackupRun
from backups.services import objects, pg
from backups.services.create import backup_create
from backups.services.restore import restore
from backups.services.runs import finish, run_or_fail
from backups.services.verify import checksum_check, migrations_check
from kimberly.api.errors import ApplicationError


class RestoreNotConfirmed(ApplicationError):
    code = "backup_restore_not_confirmed"
    status = 400


class DatabaseInUse(ApplicationError):
    code = "backup_database_in_use"
    status = 409


def _other_sessions() -> list[str]:
    """Who else is connected to this database (application names, or 'client')."""
    with connections[DEFAULT_DB_ALIAS].cursor() as cur:
        cur.execute(
            """SELECT coalesce(nullif(application_name, ''), 'client')
                 FROM pg_stat_activity
                WHERE datname = current_database() AND pid <> pg_backend_pid()
                  AND backend_type = 'client backend'"""
        )
        return [r[0] for r in cur.fetchall()]


class BackupCorrupt(ApplicationError):
    code = "backup_checksum_mismatch"
    status = 409


def backup_restore(key: str, *, confirmed: bool, force: bool = False) -> BackupRun:
    """Restore the backup `key` over the live database (only when `confirmed`,
    and with no other session connected unless `force`)."""
    if not confirmed:
        raise RestoreNotConfirmed(
            f"restoring {key} replaces the live database {pg.current_dbname()!r}: "
            "nothing was changed; run again with --yes to do it"
        )
    if not force and (others := _other_sessions()):
        raise DatabaseInUse(
            f"{len(others)} other session(s) are connected to "
            f"{pg.current_dbname()!r}: stop the web, the workers, beat and the "
            "CronJobs first (deploy/runbooks/backup-failure-and-restore.md); "
            "nothing was changed (--force restores anyway)",
            details={"sessions": sorted(set(others))},
        )
    key = objects.resolve(key)
    run = BackupRun.objects.create(kind=BackupRun.Kind.RESTORE, key=key)
    with run_or_fail(run):
        manifest = objects.read_manifest(key)
        with tempfile.TemporaryDirectory(prefix="kimberly-restore-") as tmp:
            dump = Path(tmp) / "backup.dump"
            checksum = checksum_check(dump, key, manifest)
            if not checksum.ok:
                raise BackupCorrupt(f"not restored: {checksum.detail}")
            run.sha256, run.size_bytes = manifest["sha256"], dump.stat().st_size
            safety = backup_create(prune=False)
            run.details = {"safety_backup": safety.key}
            connections.close_all()
            restore(dump, pg.current_dbname(), live=True)
        connections.close_all()
        migrations = migrations_check(DEFAULT_DB_ALIAS)
        run.details["checks"] = [asdict(checksum), asdict(migrations)]
        finish(run, ok=migrations.ok, error="" if migrations.ok else migrations.detail)
    return run
