"""Create (or refresh) the demo account that `make run` prints."""

from __future__ import annotations

from typing import Any

from kimberly.management.operator import OperatorCommand
from users import services

DEMO_EMAIL = "demo@kimberly.local"
DEMO_PASSWORD = "kimberly-demo-pass"  # noqa: S105 - local demo account, printed on purpose


class Command(OperatorCommand):
    rls_reason = "operator: create the demo user"
    help = "Create the local demo user and print how to log in."

    def handle(self, *args: Any, **options: Any) -> None:
        services.user_ensure_demo(email=DEMO_EMAIL, password=DEMO_PASSWORD)
        self.stdout.write(
            f"Demo user: {DEMO_EMAIL} / {DEMO_PASSWORD}\n"
            "  curl -s -X POST http://127.0.0.1:8000/v1/login -H 'Content-Type: application/json' \\\n"
            f'       -d \'{{"email": "{DEMO_EMAIL}", "password": "{DEMO_PASSWORD}"}}\'\n'
            "  curl -s http://127.0.0.1:8000/v1/user -H 'Authorization: Bearer <token>'"
        )
