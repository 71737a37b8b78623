"""`backup verify [KEY]`: restore a backup into a scratch database and check it.

Checks, in order (a failed checksum or restore skips the rest):

    checksum     the downloaded dump's SHA-256 is the manifest's
    restore      pg_restore into kimberly_verify_<id> succeeds
    row counts   every table has the manifest's row count, no table more or less
    audit chains the audit app's own verification, on the scratch database
    migrations   the scratch database has every migration the code has

The dump is downloaded to a temporary file first: its checksum must be known
good before pg_restore reads a byte of it. The scratch database is dropped
whatever happens.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.db.utils import load_backend

from audit.selectors import audit_verify
from backups.models import BackupRun
from backups.services import objects, pg
from backups.services.restore import RestoreFailed, restore
from backups.services.runs import finish, run_or_fail
from kimberly import rls


@dataclass(frozen=True)
class Check:
    check: str
    ok: bool
    detail: str


def checksum_check(dump: Path, key: str, manifest: dict[str, Any]) -> Check:
    """Download `key` to `dump` and compare its SHA-256 with the manifest's."""
    sha256, size = objects.download(key, dump)
    ok = sha256 == manifest.get("sha256")
    detail = f"sha256 {sha256[:16]}…, {size} bytes" + (
        "" if ok else f"; the manifest says {str(manifest.get('sha256'))[:16]}…"
    )
    return Check("checksum", ok, detail)


def _counts_check(dbname: str, expected: dict[str, int]) -> Check:
    with pg.connect(dbname) as conn:
        found = pg.table_counts(conn)
    wrong = [
        f"{t}: {found.get(t, 'no table')} restored, {expected.get(t, 'no table')} in manifest"
        for t in sorted(found.keys() | expected.keys())
        if found.get(t) != expected.get(t)
    ]
    if wrong:
        return Check("row counts", False, "; ".join(wrong[:5]))
    return Check("row counts", True, f"{len(found)} tables, {sum(found.values())} rows")


@contextmanager
def database_alias(dbname: str) -> Iterator[str]:
    """A temporary Django alias for `dbname`, configured like the default one.

    The connection is made here and registered by alias only (not in
    settings.DATABASES): the ORM's `.using(alias)` finds it, and nothing else
    in the process sees a new database."""
    alias = f"backup_{dbname}"
    params = {**connections[DEFAULT_DB_ALIAS].settings_dict, "NAME": dbname}
    wrapper = load_backend(params["ENGINE"]).DatabaseWrapper(params, alias)
    connections[alias] = wrapper
    try:
        yield alias
    finally:
        wrapper.close()
        del connections[alias]


def _audit_check(alias: str) -> Check:
    with rls.maintenance("backup verify: audit chains", using=connections[alias]):
        report = audit_verify(using=alias)
    if b := report.first_break:
        return Check(
            "audit chains",
            False,
            f"broken at event {b.event_id} (user {b.user_id or 'global'}, seq {b.seq}): "
            f"{b.reason}",
        )
    return Check(
        "audit chains", True, f"{report.events} events in {report.chains} chains"
    )


def migrations_check(alias: str) -> Check:
    """Every migration of the code is applied in the database `alias` names."""
    executor = MigrationExecutor(connections[alias])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        names = ", ".join(f"{m.app_label}.{m.name}" for m, _ in plan[:5])
        return Check("migrations", False, f"{len(plan)} not applied: {names}")
    applied = len(executor.loader.applied_migrations)
    return Check("migrations", True, f"at head ({applied} applied)")


def _scratch_checks(dump: Path, manifest: dict[str, Any]) -> list[Check]:
    name = pg.scratch_name()
    try:
        pg.create_database(name)
    except psycopg.Error as exc:
        return [Check("restore", False, f"cannot create the scratch database: {exc}")]
    try:
        try:
            restore(dump, name, live=False)
        except RestoreFailed as exc:
            return [Check("restore", False, exc.message)]
        checks = [Check("restore", True, f"into {name}")]
        checks.append(_counts_check(name, manifest.get("tables", {})))
        with database_alias(name) as alias:
            checks.append(_audit_check(alias))
            checks.append(migrations_check(alias))
        return checks
    finally:
        pg.drop_database(name)


def backup_verify(key: str | None = None) -> BackupRun:
    """Verify the named backup (or the newest); the run's details hold the checks."""
    run = BackupRun.objects.create(kind=BackupRun.Kind.VERIFY, key=key or "")
    with run_or_fail(run):
        run.key = objects.resolve(key)
        manifest = objects.read_manifest(run.key)
        with tempfile.TemporaryDirectory(prefix="kimberly-verify-") as tmp:
            dump = Path(tmp) / "backup.dump"
            checks = [checksum_check(dump, run.key, manifest)]
            run.sha256, run.size_bytes = manifest.get("sha256", ""), dump.stat().st_size
            if checks[0].ok:
                checks += _scratch_checks(dump, manifest)
        run.details = {"checks": [asdict(c) for c in checks]}
        failed = [c.check for c in checks if not c.ok]
        finish(
            run, ok=not failed, error=f"failed: {', '.join(failed)}" if failed else ""
        )
    return run
