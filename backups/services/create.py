"""`backup create`: pg_dump -Fc streamed into object storage, with a manifest.

Consistency: a connection of our own opens a REPEATABLE READ transaction under
the maintenance scope, exports its snapshot (pg_export_snapshot()) and, in that
snapshot, counts the rows of every table and reads django_migrations; pg_dump
then dumps with `--snapshot`, so the counts in the manifest describe exactly
the rows in the dump. The transaction stays open until pg_dump is done.

Streaming: pg_dump's stdout goes straight into the S3 upload (boto3 sends it in
8 MiB multipart chunks) through a reader that hashes and counts it, so neither
memory nor local disk ever holds the whole dump. A dump written to a pipe has
no data offsets in its table of contents; pg_restore copes when it reads from
a file, which is how verify and restore read it (after checking the checksum).
"""

from __future__ import annotations

# bandit B404/B603 (subprocess): pg_dump at a resolved path, a fixed argv, no shell.
import subprocess  # nosec B404
import tempfile
from collections import defaultdict
from typing import Any

import psycopg
from django.utils import timezone

from backups.models import BackupRun
from backups.services import objects, pg
from backups.services.runs import finish, run_or_fail
from kimberly import storage
from kimberly.api.errors import ApplicationError


class BackupFailed(ApplicationError):
    code = "backup_failed"
    status = 500


def _snapshot_facts(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Export the snapshot; in it, the facts the manifest records."""
    snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]  # type: ignore[index]
    database, version = conn.execute(
        "SELECT current_database(), current_setting('server_version')"
    ).fetchone()  # type: ignore[misc]
    heads: dict[str, str] = {}
    applied: dict[str, int] = defaultdict(int)
    for app, name in conn.execute(
        "SELECT app, name FROM django_migrations ORDER BY id"
    ).fetchall():
        heads[app] = name
        applied[app] += 1
    return {
        "snapshot": snapshot,
        "database": database,
        "server_version": version,
        "migration_heads": heads,
        "migrations_applied": dict(applied),
        "tables": pg.table_counts(conn),
    }


def _dump_into(key: str, snapshot: str) -> tuple[str, int]:
    """Run pg_dump in `snapshot`, streaming into `key`; the SHA-256 and size."""
    cmd = [
        pg.tool("pg_dump"),
        "--format=custom",
        "--enable-row-security",
        f"--snapshot={snapshot}",
        "--no-password",
    ]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(  # nosec B603
            cmd, stdout=subprocess.PIPE, stderr=err, env=pg.tool_env()
        )
        assert proc.stdout is not None
        reader = objects.HashingReader(proc.stdout)
        try:
            storage.put_file(key, reader, "application/octet-stream")  # type: ignore[arg-type]
        finally:
            proc.stdout.close()
            code = proc.wait()
        if code != 0:
            storage.delete(key)
            err.seek(0)
            message = err.read().decode(errors="replace").strip()[-2000:]
            raise BackupFailed(f"pg_dump exited with {code}: {message}")
    return reader.sha256.hexdigest(), reader.size


def backup_create(*, prune: bool = True) -> BackupRun:
    """Dump the database into object storage; then (prune) apply retention."""
    run = BackupRun.objects.create(kind=BackupRun.Kind.CREATE)
    with run_or_fail(run):
        run.key = objects.dump_key(run.started_at, run.pk)
        run.save(update_fields=["key"])
        with pg.connect(autocommit=False) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            facts = _snapshot_facts(conn)
            sha256, size = _dump_into(run.key, facts.pop("snapshot"))
            conn.rollback()
        objects.write_manifest(
            run.key,
            {
                "format": "pg_dump custom",
                "key": run.key,
                "created_at": run.started_at.isoformat(),
                "sha256": sha256,
                "size_bytes": size,
                **facts,
            },
        )
        run.sha256, run.size_bytes = sha256, size
        if prune:
            run.details = {"pruned": objects.prune(timezone.now())}
        finish(run)
    return run
