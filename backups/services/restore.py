"""pg_restore of a downloaded dump: into a scratch database, or over the live one.

The live restore is in place: `pg_restore --clean --if-exists
--single-transaction --exit-on-error`. One transaction means all or nothing:
any error (a lock not granted within BACKUP_RESTORE_LOCK_TIMEOUT, a missing
privilege, a corrupt archive) rolls everything back and the database is as it
was. We did not restore into a new database and swap names: renaming needs
every other session out of both databases, the app role may lack the right to
create databases on a managed server, and a half-done swap leaves the
deployment pointing at no database; the in-place transaction has no such
middle state. Web, workers and beat should be stopped first (deploy/backups.md):
they would otherwise wait on the restore's locks, or hold it up.

Left out of a live restore: the `vector` extension (the superuser's, never
dropped: its columns would go with it) and the backups app's own table, so the
record of backups, including the one taken just before, is not rolled back.
"""

from __future__ import annotations

# bandit B404/B603 (subprocess): pg_restore at a resolved path, a fixed argv, no shell.
import subprocess  # nosec B404
import tempfile
from pathlib import Path

from django.conf import settings

from backups.services import pg
from kimberly.api.errors import ApplicationError


class RestoreFailed(ApplicationError):
    code = "backup_restore_failed"
    status = 500


def _keep(entry: str, *, live: bool) -> bool:
    """Whether a line of `pg_restore -l` is restored."""
    if entry.startswith(";") or not entry.strip():
        return True
    if "COMMENT - EXTENSION" in entry:
        return False
    if live:
        _, _, rest = entry.partition(";")
        words = rest.split()
        # "<catalog> <oid> EXTENSION - vector" / "... TABLE public backups_backuprun kimberly"
        if words[2:3] == ["EXTENSION"] or " public backups_" in entry:
            return False
    return True


def _run(cmd: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(  # nosec B603
        cmd, env=env, capture_output=True, check=False
    )
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip()[-2000:]
        raise RestoreFailed(
            f"{Path(cmd[0]).name} exited with {done.returncode}: {message}"
        )
    return done.stdout.decode()


def restore(dump: Path, dbname: str, *, live: bool) -> None:
    """Restore `dump` into `dbname` (live: over what is there) in one transaction."""
    tool = pg.tool("pg_restore")
    toc = _run([tool, "--list", str(dump)], pg.tool_env())
    options = f"-c lock_timeout={settings.BACKUP_RESTORE_LOCK_TIMEOUT}" if live else ""
    with tempfile.NamedTemporaryFile("w", suffix=".list") as listing:
        listing.write("".join(e for e in toc.splitlines(True) if _keep(e, live=live)))
        listing.flush()
        cmd = [
            tool,
            "--exit-on-error",
            "--single-transaction",
            "--no-password",
            f"--use-list={listing.name}",
            f"--dbname={dbname}",
        ]
        if live:
            cmd += ["--clean", "--if-exists"]
        _run([*cmd, str(dump)], pg.tool_env(dbname, options=options))
