"""./cli healthcheck [--json] [--worker-timeout S]: every dependency, one row each.

Exit status: 0 when every check passes, 1 when a required one fails (a store,
the embedding model), 2 when only optional ones do (the model server, a queue
with no worker answering): "degraded". kimberly/healthcheck.py has the checks.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError, CommandParser

from kimberly import healthcheck
from kimberly.management.operator import OperatorCommand

_VERDICT = {
    healthcheck.OK: "healthy",
    healthcheck.FAILED: "unhealthy: a required check failed",
    healthcheck.DEGRADED: "degraded: an optional check failed",
}


class Command(OperatorCommand):
    rls_reason = "operator: the readiness checks read the migration table"
    help = (
        "Check every dependency (PostgreSQL with pgvector and migrations, Redis,"
        " the broker, object storage, the embedding model, the model server,"
        " Celery workers per queue) and print a table, or JSON with --json. Exit"
        " status 0 healthy, 1 a required check failed, 2 degraded (only optional"
        " checks failed)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="one JSON object")
        parser.add_argument(
            "--worker-timeout",
            type=float,
            default=2.0,
            help="seconds to wait for the workers' answers (default 2)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        rows = healthcheck.run(worker_timeout=options["worker_timeout"])
        code = healthcheck.status(rows)
        if options["json"]:
            payload = {"status": code, "checks": [r.as_dict() for r in rows]}
            self.stdout.write(json.dumps(payload, indent=2))
        else:
            self.stdout.write(_table(rows))
        if code != healthcheck.OK:
            raise CommandError(_VERDICT[code], returncode=code)
        if not options["json"]:
            self.stdout.write(_VERDICT[code])


def _table(rows: list[healthcheck.Row]) -> str:
    header = ("name", "ok", "ms", "detail")
    cells = [
        (
            r.name + ("" if r.required else " (optional)"),
            "yes" if r.ok else "NO",
            f"{r.ms:.0f}",
            r.detail,
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(3)]
    lines = [
        "  ".join(c[i].ljust(widths[i]) for i in range(3)) + "  " + c[3]
        for c in [header, *cells]
    ]
    return "\n".join(lines)
