"""What the Agents screen shows of an agent, a task, a reminder and an event.

A task is shown as the API shows it (agents.outputs.task_out: one rule for
withholding a result built on memories that changed since), plus what the
screen needs on top: the memory reads gathered from the trace, and which
actions the task's status allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agents.models import AgentTask
from agents.outputs import task_out
from agents.selectors import AgentState

Status = AgentTask.Status
WAITING = (Status.QUEUED, Status.RUNNING)
CANCELLABLE = (Status.QUEUED, Status.RUNNING, Status.PREVIEWED)


@dataclass(frozen=True)
class AgentCard:
    name: str
    title: str
    description: str
    risk: str
    permissions: list[str]
    tiers: list[str]
    default_timeout: int
    enabled: bool  # may run for this user
    user_enabled: bool  # the user's own switch
    operator_enabled: bool
    operator_reason: str


def agent_card(state: AgentState) -> AgentCard:
    a = state.agent
    return AgentCard(
        name=a.name,
        title=f"{a.name.capitalize()} agent",
        description=a.description,
        risk=a.risk,
        permissions=list(a.permissions),
        tiers=list(a.tiers),
        default_timeout=a.default_timeout,
        enabled=state.enabled,
        user_enabled=state.user_enabled is not False,
        operator_enabled=state.operator_enabled,
        operator_reason=state.operator_reason,
    )


@dataclass(frozen=True)
class TaskView:
    task: AgentTask  # for its times, as datetimes
    out: dict[str, Any]  # task_out(task): the API's view of it
    reads: list[dict[str, Any]]  # {memory_id, tier, query}, first read of each

    @property
    def id(self) -> str:
        return str(self.out["task_id"])

    @property
    def status(self) -> str:
        return str(self.out["status"])

    @property
    def waiting(self) -> bool:
        return self.status in WAITING

    @property
    def previewed(self) -> bool:
        return self.status == Status.PREVIEWED

    @property
    def can_commit(self) -> bool:
        return self.previewed and not self.out["stale_memories"]

    @property
    def can_cancel(self) -> bool:
        return self.status in CANCELLABLE

    @property
    def result_lines(self) -> list[tuple[str, str]]:
        """The result as "key: value" lines (its applied writes listed apart)."""
        result = self.out["result"] or {}
        return [(k, _plain(v)) for k, v in result.items() if k != "applied"]

    @property
    def applied(self) -> list[str]:
        applied = (self.out["result"] or {}).get("applied") or []
        return [_plain(a) for a in applied]


def _plain(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_plain(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_plain(v) for v in value)
    return str(value)


def memory_reads(trace: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each memory the task read, once, in the order first read."""
    seen: dict[str, dict[str, Any]] = {}
    for step in trace:
        for read in step.get("reads", []):
            seen.setdefault(
                read["memory_id"],
                {k: read.get(k, "") for k in ("memory_id", "tier", "query")},
            )
    return list(seen.values())


def task_view(task: AgentTask, *, full: bool = True) -> TaskView:
    """The task's panel; `full=False` for a history row (no result or trace,
    so no look at the memories it read)."""
    out = task_out(task, full=full)
    return TaskView(task=task, out=out, reads=memory_reads(out["trace"]))


def task_said(view: TaskView) -> str:
    """What is announced when a task the user is watching stops waiting."""
    if view.previewed:
        if view.out["stale_memories"]:
            return "Preview ready, but memories it read have changed since."
        n = len(view.out["planned_writes"])
        return (
            f"Preview ready: {n} planned write{'s' if n != 1 else ''}. Commit to apply."
        )
    if view.status == Status.SUCCEEDED:
        return "Task succeeded."
    error = view.out["error"] or {}
    return f"Task {view.status.replace('_', ' ')}: {error.get('message', '')}".strip()
