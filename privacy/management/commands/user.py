"""./cli user export <user> [--format json|csv]: export a user's data now.

Runs the export in this process (no worker, no cooldown: an operator's request),
audited in the user's chain, and prints the object key and a signed URL. Other
privacy operations (`user purge`) add their own subcommand here.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from kimberly.api.errors import ApplicationError
from kimberly.context import Actor, Context
from privacy.exports import services as exports
from users.selectors import user_resolve


class Command(BaseCommand):
    help = "Privacy operations on one user's data."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        export = sub.add_parser("export", help="export the user's data into a zip")
        export.add_argument("user", help="user id or email")
        export.add_argument("--format", choices=["json", "csv"], default="json")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user = user_resolve(options["user"])
            if options["action"] == "export":
                self._export(user, options["format"])
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc

    def _export(self, user: Any, fmt: str) -> None:
        ctx = Context(Actor.system("cli"))
        export = exports.export_request(ctx=ctx, user=user, fmt=fmt, operator=True)
        done = exports.export_run(export_id=str(export.pk))
        if done is None:
            raise CommandError(f"{export.public_id} was taken by another process")
        self.stdout.write(
            f"export {done.public_id}: {done.size_bytes} bytes at {done.object_key}\n"
            f"download (expires in {settings.EXPORT_URL_EXPIRE_SECONDS} s): "
            f"{exports.export_download_url(done)}"
        )
