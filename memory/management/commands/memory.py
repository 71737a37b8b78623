"""./cli memory reembed [--all]: queue memories for (re-)embedding with the current
model; ./cli memory seal-existing: seal what should be sealed and is not."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from kimberly.management.operator import OperatorCommand
from memory import embeddings, indexing
from memory.selectors import unsealed_sensitive_count
from memory.services.sealing import seal_existing


class Command(OperatorCommand):
    rls_reason = "operator: memory maintenance across users"
    help = "Memory maintenance."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        reembed = sub.add_parser(
            "reembed",
            help="queue memories and goals whose vector is missing, outdated or from another model",
        )
        reembed.add_argument("--all", action="store_true", help="queue every item")
        sub.add_parser(
            "seal-existing",
            help="seal sensitive memories (all, with SEAL_ALL_CONTENT) kept in plain text",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "seal-existing":
            done = seal_existing()
            self.stdout.write(
                f"sealed {done.items} memories; {unsealed_sensitive_count()} left "
                f"unsealed; dropped {done.vectors} vectors of sensitive memories "
                "without model_context"
            )
            return
        queued = indexing.memory_reembed(all_items=options["all"])
        self.stdout.write(
            f"queued {queued.memories} memories and {queued.goals} goals for "
            f"embedding with {embeddings.model_tag()}; the Celery workers embed "
            "them in batches"
        )
