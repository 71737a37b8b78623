"""./cli backup create | list | verify [KEY] | restore KEY --yes (deploy/backups.md)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from backups import selectors
from backups.models import BackupRun
from backups.services import objects
from backups.services.create import backup_create
from backups.services.live import backup_restore
from backups.services.verify import backup_verify
from kimberly import storage
from kimberly.api.errors import ApplicationError
from kimberly.management.operator import OperatorCommand


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in rows
    )


class Command(OperatorCommand):
    rls_reason = "operator: backups hold every user's rows"
    help = (
        "Database backups in object storage: create one (pg_dump, checksum,"
        " manifest, then retention), list them, verify one by restoring it into a"
        " scratch database, or restore one over the live database (--yes)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("create", help="dump the database into object storage")
        sub.add_parser("list", help="backups, newest first")
        p = sub.add_parser("verify", help="restore into a scratch database and check")
        p.add_argument("key", nargs="?", help="a backup key (default: the newest)")
        p = sub.add_parser("restore", help="restore over the live database")
        p.add_argument("key", help="the backup key (./cli backup list)")
        p.add_argument(
            "--yes", action="store_true", help="really replace the live database"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        try:
            if action == "create":
                self._create()
            elif action == "list":
                self._list()
            elif action == "verify":
                self._verify(options["key"])
            else:
                self._restore(options["key"], options["yes"])
        except ApplicationError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc

    def _create(self) -> None:
        run = backup_create()
        self.stdout.write(
            f"backup {run.key}: {run.size_bytes} bytes, sha256 {run.sha256}"
        )
        for key in run.details.get("pruned", []):
            self.stdout.write(f"  pruned {key} (retention)")

    def _list(self) -> None:
        stored = storage.list_prefix(objects.prefix())
        entries = selectors.backup_list(stored=stored)
        rows = [["key", "created (UTC)", "bytes", "sha256", "verified (UTC)"]]
        for e in entries:
            verified = (
                e.verified_at.strftime("%Y-%m-%d %H:%M") if e.verified_at else "-"
            )
            rows.append(
                [
                    e.key,
                    e.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                    str(e.size_bytes),
                    e.sha256[:16],
                    verified,
                ]
            )
        self.stdout.write(_table(rows))
        known = {e.key for e in entries}
        for key in objects.stored_dumps():
            if key not in known:
                self.stdout.write(f"  {key}: in the bucket, no run recorded here")

    def _print_checks(self, run: BackupRun) -> None:
        rows = [["check", "result", "detail"]]
        for c in run.details.get("checks", []):
            rows.append([c["check"], "ok" if c["ok"] else "FAILED", c["detail"]])
        self.stdout.write(_table(rows))

    def _verify(self, key: str | None) -> None:
        run = backup_verify(key)
        self.stdout.write(f"verify {run.key}")
        self._print_checks(run)
        if run.status != BackupRun.Status.SUCCEEDED:
            raise CommandError(f"backup {run.key} FAILED verification: {run.error}")
        self.stdout.write(f"backup {run.key} verified")

    def _restore(self, key: str, yes: bool) -> None:
        run = backup_restore(key, confirmed=yes)
        self.stdout.write(
            f"restored {run.key}; the database before it is backup "
            f"{run.details.get('safety_backup')}"
        )
        self._print_checks(run)
        if run.status != BackupRun.Status.SUCCEEDED:
            raise CommandError(f"restored, but: {run.error} (run ./cli migrate)")
