"""./cli user export <user> [--format json|csv] | purge <email>.

export: the user's data into a zip now, in this process (no worker, no
cooldown: an operator's request), audited in the user's chain; prints the
object key and a signed URL. purge: erase the account now and print its
receipt. Each privacy part adds its subcommand (a parser and a handler) to
SUBCOMMANDS.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from kimberly.api.errors import ApplicationError
from kimberly.context import Actor, Context
from kimberly.management.operator import OperatorCommand
from privacy.erasure import selectors
from privacy.erasure import services as erasure
from privacy.exports import services as exports
from users.models import User
from users.selectors import user_resolve


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


def _add_export(sub: Any) -> None:
    export = sub.add_parser("export", help="export the user's data into a zip")
    export.add_argument("user", help="user id or email")
    export.add_argument("--format", choices=["json", "csv"], default="json")


def _export(command: BaseCommand, options: dict[str, Any]) -> None:
    try:
        user = user_resolve(options["user"])
    except ApplicationError as exc:
        raise CommandError(exc.message) from exc
    ctx = Context(Actor.system("cli"))
    export = exports.export_request(
        ctx=ctx, user=user, fmt=options["format"], operator=True
    )
    done = exports.export_run(export_id=str(export.pk))
    if done is None:
        raise CommandError(f"{export.public_id} was taken by another process")
    command.stdout.write(
        f"export {done.public_id}: {done.size_bytes} bytes at {done.object_key}\n"
        f"download (expires in {settings.EXPORT_URL_EXPIRE_SECONDS} s): "
        f"{exports.export_download_url(done)}"
    )


SUBCOMMANDS: dict[str, tuple[Callable[[Any], None], Callable[..., None]]] = {
    "export": (_add_export, _export),
    "purge": (_add_purge, _purge),
}


class Command(OperatorCommand):
    rls_reason = "operator: export or purge one user"
    help = "Privacy operations on one user's data (export, purge)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        for add, _ in SUBCOMMANDS.values():
            add(sub)

    def handle(self, *args: Any, **options: Any) -> None:
        _, run = SUBCOMMANDS[options["action"]]
        run(self, options)
