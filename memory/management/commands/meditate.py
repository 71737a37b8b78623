"""./cli meditate [--user U] [--dry-run]: score memories now and print a summary;
./cli meditate --history [--limit N]: the latest nightly runs, changing nothing."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from kimberly.api.errors import ApplicationError
from kimberly.context import Actor, Context
from kimberly.management.operator import OperatorCommand
from memory.meditation import meditation_all_inline, meditation_run
from memory.selectors import nightly_runs
from users.selectors import user_resolve


def _positive(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError(raw)
    return value


class Command(OperatorCommand):
    rls_reason = "operator: meditation for one or every user"
    help = "Run meditation (scoring v1) for one user or every active user."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--user", help="user id or email (default: every active user)"
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="record scores, change none"
        )
        parser.add_argument(
            "--history",
            action="store_true",
            help="list the latest nightly (every-user) runs instead of running one",
        )
        parser.add_argument(
            "--limit",
            type=_positive,
            default=10,
            help="runs --history lists (default 10)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["history"]:
            return self._history(options["limit"])
        ctx = Context(Actor.system("cli"))
        dry = " (dry run: nothing changed)" if options["dry_run"] else ""
        if not options.get("user"):
            run = meditation_all_inline(ctx=ctx, dry_run=options["dry_run"])
            self.stdout.write(
                f"all users: run {run.pk} {run.status}, {run.children.count()} users, "
                f"{run.processed} memories scored, {run.promoted} promoted, "
                f"{run.expired} expired, {run.archived} archived, {run.purged} purged, "
                f"{run.deferred} deferred{dry}"
            )
            if run.error:
                raise CommandError(run.error)
            return
        try:
            user = user_resolve(options["user"])
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        run = meditation_run(ctx=ctx, user=user, dry_run=options["dry_run"])
        self.stdout.write(
            f"{user.email}: run {run.pk} {run.status}, {run.processed} memories scored, "
            f"{run.promoted} promoted, {run.expired} expired, {run.archived} archived, "
            f"{run.purged} purged, {run.deferred} deferred{dry}"
        )

    def _history(self, limit: int) -> None:
        self.stdout.write(
            f"{'run':>7}  {'started (UTC)':<18}{'status':<8}{'seconds':>8}{'users':>7}"
            f"{'failed':>7}{'scored':>8}{'promoted':>9}{'archived':>9}{'purged':>7}  error"
        )
        for run in nightly_runs(limit=limit):
            seconds = (
                "-" if run.duration_ms is None else f"{run.duration_ms / 1000:.1f}"
            )
            dry = " (dry run)" if run.dry_run else ""
            self.stdout.write(
                f"{run.pk:>7}  {run.started_at:%Y-%m-%d %H:%M}  {run.status:<8}"
                f"{seconds:>8}{run.users:>7}{run.failed_users:>7}"  # type: ignore[attr-defined]
                f"{run.processed:>8}{run.promoted:>9}{run.archived:>9}{run.purged:>7}"
                f"  {run.error[:80]}{dry}"
            )
