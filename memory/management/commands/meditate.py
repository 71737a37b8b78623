"""./cli meditate [--user U] [--dry-run]: score memories now and print a summary."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from kimberly.api.errors import ApplicationError
from kimberly.context import Actor, Context
from memory.meditation import meditation_run
from users.models import User
from users.selectors import user_resolve


class Command(BaseCommand):
    help = "Run meditation (scoring v1) for one user or every active user."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--user", help="user id or email (default: every active user)"
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="record scores, change none"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            users = (
                [user_resolve(options["user"])]
                if options.get("user")
                else list(User.objects.filter(is_active=True))
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        ctx = Context(Actor.system("cli"))
        total = 0
        for user in users:
            run = meditation_run(ctx=ctx, user=user, dry_run=options["dry_run"])
            total += run.processed
            self.stdout.write(
                f"{user.email}: run {run.pk} {run.status}, {run.processed} memories scored"
                f"{' (dry run: nothing changed)' if run.dry_run else ''}"
            )
        self.stdout.write(f"{len(users)} users, {total} memories scored")
