"""The base of the operators' management commands (`./cli ...`)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from kimberly import rls


class OperatorCommand(BaseCommand):
    """Runs under the maintenance scope (kimberly/rls.py): an operator's command
    acts on any user's rows by design. `rls_reason` says what for."""

    rls_reason: str = ""

    def execute(self, *args: Any, **options: Any) -> Any:
        with rls.maintenance(self.rls_reason or f"operator command {__name__}"):
            return super().execute(*args, **options)
