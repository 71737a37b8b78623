"""./cli storage check: the object storage bucket is reachable and writable."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from kimberly import storage
from kimberly.api.errors import ApplicationError


class Command(BaseCommand):
    # Row-level security: reads no table (tests/test_rls.py checks the claim).
    rls_no_rows = "object storage only"
    help = "Check the object storage (S3) bucket: write, read back, delete a probe."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("check", help="write, read back and delete a probe object")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = storage.check()
        except ApplicationError as exc:
            raise CommandError(f"storage check failed: {exc.message}") from exc
        self.stdout.write(f"bucket:   {result['bucket']}")
        self.stdout.write(f"endpoint: {result['endpoint']}")
        if result["location"]:
            self.stdout.write(f"prefix:   {result['location']}/")
        self.stdout.write(f"OK (write, read back, delete in {result['ms']} ms)")
