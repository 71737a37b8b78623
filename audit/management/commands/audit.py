"""./cli audit verify [--user ID|EMAIL]: recompute the hash chains; exit 1 on a break."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from audit.selectors import audit_verify
from kimberly.api.errors import ApplicationError
from kimberly.management.operator import OperatorCommand
from users.selectors import user_resolve


class Command(OperatorCommand):
    rls_reason = "operator: audit chains of every user"
    help = "Audit log operations."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        verify = sub.add_parser("verify", help="verify the append-only hash chains")
        verify.add_argument("--user", help="user id or email (default: every chain)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user_id = user_resolve(options["user"]).pk if options.get("user") else None
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        report = audit_verify(user_id=user_id)
        if report.first_break:
            b = report.first_break
            raise CommandError(
                f"audit chain BROKEN at event id={b.event_id} (user {b.user_id or 'global'}, "
                f"seq {b.seq}): {b.reason}"
            )
        self.stdout.write(
            f"audit OK: {report.events} events in {report.chains} chains verified"
        )
