"""./cli quota set --user U --tier T --limit BYTES | --default;  ./cli quota show --user U."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from kimberly.api.errors import ApplicationError
from kimberly.context import Actor, Context
from kimberly.management.operator import OperatorCommand
from memory.constants import Tier
from memory.quotas import quota_overview, quota_set
from users.selectors import user_resolve


class Command(OperatorCommand):
    rls_reason = "operator: a user's quotas"
    help = "Show or override a user's memory quotas."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        show = sub.add_parser("show", help="quota, hard limit and usage per tier")
        show.add_argument("--user", required=True, help="user id or email")
        set_ = sub.add_parser("set", help="override one tier's quota")
        set_.add_argument("--user", required=True, help="user id or email")
        set_.add_argument("--tier", required=True, choices=Tier.values)
        limit = set_.add_mutually_exclusive_group(required=True)
        limit.add_argument("--limit", type=int, help="quota in bytes")
        limit.add_argument("--default", action="store_true", help="remove the override")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user = user_resolve(options["user"])
            if options["action"] == "set":
                quota_set(
                    ctx=Context(Actor.system("cli")),
                    user_id=user.pk,
                    tier=options["tier"],
                    limit_bytes=None if options["default"] else options["limit"],
                )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"{user.email} ({user.pk})")
        self.stdout.write(
            f"{'tier':<12}{'quota':>12}{'hard limit':>12}{'used':>12}  items"
        )
        for t in quota_overview(user_id=user.pk):
            mark = " (override)" if t.override else ""
            self.stdout.write(
                f"{t.tier:<12}{t.quota_bytes:>12}{t.hard_limit_bytes:>12}{t.used_bytes:>12}"
                f"  {t.active_items} active, {t.archived_items} archived{mark}"
            )
