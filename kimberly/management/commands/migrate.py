"""`migrate` under the maintenance scope: data migrations touch every user's rows."""

from typing import Any

from django.core.management.commands import migrate

from kimberly import rls


class Command(migrate.Command):
    def handle(self, *args: Any, **options: Any) -> Any:
        # The schema changes run as the tables' owner; RunPython steps read and
        # write rows, which row-level security would hide without a scope.
        with rls.maintenance("migrate: schema and data migrations"):
            return super().handle(*args, **options)
