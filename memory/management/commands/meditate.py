"""./cli meditate [--user U] [--dry-run]: score memories now and print a summary."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from kimberly.api.errors import ApplicationError
from kimberly.context import Actor, Context
from kimberly.management.operator import OperatorCommand
from memory.meditation import meditation_all_inline, meditation_run
from users.selectors import user_resolve


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

    def handle(self, *args: Any, **options: Any) -> None:
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
