"""./cli keys status | rotate [--new-local-key]."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser
from django.db.models import Count

from kimberly import kms
from kimberly.management.operator import OperatorCommand
from users import keys
from users.models import DataKey


class Command(OperatorCommand):
    rls_reason = "operator: every user's data keys"
    help = (
        "Show which key-encryption keys wrap the users' data keys, or re-wrap"
        " every data key under the current one (KMS_PROVIDER; content is not"
        " re-encrypted)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("status", help="data keys per key-encryption key")
        rotate = sub.add_parser("rotate", help="re-wrap every data key")
        rotate.add_argument(
            "--new-local-key",
            action="store_true",
            help="first add a new key to the local key file and make it current",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "rotate":
            if options.get("new_local_key"):
                self.stdout.write(f"new local key: {kms.add_local_key()}")
            done = keys.keys_rotate()
            self.stdout.write(
                f"re-wrapped {done.rewrapped} data key(s) under {done.kek_id}"
            )
        self.stdout.write(f"current: {kms.provider().key_id}")
        for row in (
            DataKey.objects.values("kek_id").annotate(n=Count("pk")).order_by("kek_id")
        ):
            self.stdout.write(f"{row['kek_id']:<40}{row['n']:>8} data key(s)")
