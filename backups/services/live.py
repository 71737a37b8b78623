"""`backup restore KEY --yes`: put a backup back into the live database.

Order, each step only if the one before passed: the dump is downloaded and its
checksum checked; a fresh backup of the live database is taken (without
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


class BackupCorrupt(ApplicationError):
    code = "backup_checksum_mismatch"
    status = 409


def backup_restore(key: str, *, confirmed: bool) -> BackupRun:
    """Restore the backup `key` over the live database (only when `confirmed`)."""
    if not confirmed:
        raise RestoreNotConfirmed(
            f"restoring {key} replaces the live database {pg.current_dbname()!r}: "
            "nothing was changed; run again with --yes to do it"
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
