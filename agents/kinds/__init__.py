"""The four agents' code. Each kind checks its params when a task is submitted
(bad input is a 4xx then, not a failed task later) and runs with a `Run`."""

from __future__ import annotations

from typing import Any, Protocol

from agents.kinds import coder, reminder, researcher, scheduler
from agents.runs import Run
from kimberly.context import Context
from users.models import User


class Kind(Protocol):
    def validate(
        self, *, ctx: Context, user: User, task: str, params: dict[str, Any]
    ) -> None: ...

    def run(self, run: Run) -> dict[str, Any]: ...


KINDS: dict[str, Kind] = {
    "reminder": reminder,  # type: ignore[dict-item]
    "scheduler": scheduler,  # type: ignore[dict-item]
    "researcher": researcher,  # type: ignore[dict-item]
    "coder": coder,  # type: ignore[dict-item]
}


def validate(
    name: str, *, ctx: Context, user: User, task: str, params: dict[str, Any]
) -> None:
    KINDS[name].validate(ctx=ctx, user=user, task=task, params=params)


def run_agent(run: Run) -> dict[str, Any]:
    return KINDS[run.agent.name].run(run)
