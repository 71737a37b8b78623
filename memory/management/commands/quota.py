"""./cli quota set --user U --tier T --limit BYTES | --default;  ./cli quota show --user U;
./cli quota pressure [--threshold 0.8]: the users whose tiers are nearly full."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from kimberly.api.errors import ApplicationError
from kimberly.context import Actor, Context
from kimberly.management.operator import OperatorCommand
from memory.constants import Tier
from memory.quotas import quota_overview, quota_pressure_list, quota_set
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
        pressure = sub.add_parser(
            "pressure", help="tiers at or above a share of their quota, fullest first"
        )
        pressure.add_argument(
            "--threshold", type=float, default=0.8, help="share of the quota (0.8)"
        )
        pressure.add_argument("--limit", type=int, default=100, help="rows at most")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "pressure":
            return self._pressure(options["threshold"], options["limit"])
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

    def _pressure(self, threshold: float, limit: int) -> None:
        if not 0 < threshold <= 10 or limit < 1:
            raise CommandError("--threshold must be above 0, --limit at least 1")
        rows = quota_pressure_list(threshold=threshold, limit=limit)
        self.stdout.write(
            f"{'user':<40}{'tier':<12}{'used':>12}{'quota':>12}{'share':>8}"
        )
        for r in rows:
            share = r.used_bytes / r.quota_bytes if r.quota_bytes else 0.0
            self.stdout.write(
                f"{r.email:<40}{r.tier:<12}{r.used_bytes:>12}{r.quota_bytes:>12}"
                f"{share:>8.0%}"
            )
        self.stdout.write(f"{len(rows)} tier(s) at or above {threshold:.0%} of quota")
