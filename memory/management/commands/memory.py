"""./cli memory reembed [--all]: queue memories for (re-)embedding with the current model."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from kimberly.management.operator import OperatorCommand
from memory import embeddings, indexing


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

    def handle(self, *args: Any, **options: Any) -> None:
        queued = indexing.memory_reembed(all_items=options["all"])
        self.stdout.write(
            f"queued {queued.memories} memories and {queued.goals} goals for "
            f"embedding with {embeddings.model_tag()}; the Celery workers embed "
            "them in batches"
        )
