"""./cli compliance check [--user ID|EMAIL] | retention [--enforce [--type T]].

check: the named compliance checks for the whole system (or one user), as JSON;
exit 1 when one fails. retention: the system's retention policies (with
--enforce: one enforcement pass now, every data type or one).
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError, CommandParser

from kimberly.api.errors import ApplicationError
from kimberly.management.operator import OperatorCommand
from privacy.compliance.checks import compliance_check
from privacy.retention import policies
from privacy.retention.enforce import retention_enforce
from privacy.retention.models import DataType
from users.selectors import user_resolve


class Command(OperatorCommand):
    rls_reason = "operator: compliance checks and retention of every user"
    help = "Compliance checks and retention policies."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        check = sub.add_parser("check", help="run the compliance checks")
        check.add_argument("--user", help="user id or email (default: the system)")
        retention = sub.add_parser("retention", help="show or enforce retention")
        retention.add_argument(
            "--enforce", action="store_true", help="run an enforcement pass now"
        )
        retention.add_argument("--type", choices=DataType.values, help="one data type")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "check":
            self._check(options)
        else:
            self._retention(options)

    def _check(self, options: dict[str, Any]) -> None:
        try:
            user_id = user_resolve(options["user"]).pk if options.get("user") else None
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        checks = compliance_check(user_id=user_id)
        out = [{"name": c.name, "ok": c.ok, "details": c.details} for c in checks]
        self.stdout.write(json.dumps(out, indent=2, default=str))
        failed = [c.name for c in checks if not c.ok]
        if failed:
            raise CommandError(f"failed: {', '.join(failed)}")

    def _retention(self, options: dict[str, Any]) -> None:
        if options["enforce"]:
            types = [options["type"]] if options.get("type") else None
            done = retention_enforce(data_types=types)
            self.stdout.write(json.dumps({"deleted": done}, indent=2))
            return
        for p in policies.policies_for(None):
            self.stdout.write(
                f"{p.data_type:22} {p.system_days:6} days  {p.description}"
            )
