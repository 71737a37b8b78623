"""The four agents' code. Each kind checks its params when a task is submitted
(bad input is a 4xx then, not a failed task later) and runs with a `Run`."""

from __future__ import annotations

from importlib import import_module
from typing import Any, Protocol, cast

from agents.registry import AGENT_TYPES
from agents.runs import Run
from kimberly.context import Context
from users.models import User


class Kind(Protocol):
    def validate(
        self, *, ctx: Context, user: User, task: str, params: dict[str, Any]
    ) -> None: ...

    def run(self, run: Run) -> dict[str, Any]: ...


def kind(name: str) -> Kind:
    """The code of agent type `name`: the module agents.kinds.<name>, imported
    when first used (the coder's sandbox loads only where code runs)."""
    assert name in AGENT_TYPES, name
    return cast(Kind, import_module(f"agents.kinds.{name}"))


def validate(
    name: str, *, ctx: Context, user: User, task: str, params: dict[str, Any]
) -> None:
    kind(name).validate(ctx=ctx, user=user, task=task, params=params)


def run_agent(run: Run) -> dict[str, Any]:
    return kind(run.agent.name).run(run)
