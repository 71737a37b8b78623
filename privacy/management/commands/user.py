"""./cli user purge <email>: erase an account now and print its receipt.

A subcommand-style command: each privacy part adds its own subcommand (purge
here; export is another's) with a parser and a handler in SUBCOMMANDS.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from kimberly.context import Actor, Context
from privacy.erasure import selectors
from privacy.erasure import services as erasure
from users.models import User


def _user(email: str) -> User:
    user = User.objects.filter(email=User.objects.normalize_email(email)).first()
    if user is None:
        raise CommandError(f"no user {email}")
    return user


def _purge(command: BaseCommand, options: dict[str, Any]) -> None:
    user = _user(options["email"])
    ctx = Context(Actor("operator", "cli"))
    deletion, token = erasure.user_purge(ctx=ctx, user=user)
    command.stdout.write(
        json.dumps(
            {
                "deletion_id": deletion.public_id,
                "status": deletion.status,
                "receipt_token": token,
                "receipt": selectors.deletion_receipt(deletion),
            },
            indent=2,
        )
    )
    if deletion.status != deletion.State.SUCCEEDED:
        raise CommandError("erasure left data behind: see the receipt (run it again)")


def _add_purge(sub: Any) -> None:
    purge = sub.add_parser(
        "purge",
        help="erase the account from every store now and print the receipt",
    )
    purge.add_argument("email")


SUBCOMMANDS: dict[str, tuple[Callable[[Any], None], Callable[..., None]]] = {
    "purge": (_add_purge, _purge),
}


class Command(BaseCommand):
    help = "Account privacy operations (purge)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        for add, _ in SUBCOMMANDS.values():
            add(sub)

    def handle(self, *args: Any, **options: Any) -> None:
        _, run = SUBCOMMANDS[options["action"]]
        run(self, options)
