"""One execution of an agent task: what the agent's code gets to work with.

A `Run` is the agent's only way to the user's memory (through memory.gateway,
with the grant of its type) and the only way it changes anything: it *plans*
writes (`run.write`), which the framework applies at the end in one
transaction, or, for a preview, keeps as the task's plan. Each step the agent
takes is traced with its memory reads and planned writes and its duration.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils import timezone

from agents.models import AgentTask
from agents.registry import AgentType
from agents.violations import record_violation
from kimberly.api.errors import ApplicationError
from kimberly.api.serializers import iso_time
from kimberly.context import Actor, Context
from memory import gateway
from users.models import User

STOP_CHECK_SECONDS = 0.5


class TaskTimedOut(ApplicationError):
    """Raised by an agent whose work ran out of time (the task ends timed_out)."""

    code = "timed_out"
    status = 408


@dataclass
class Write:
    """A change an agent asks for: applied by agents.appliers.APPLIERS[kind]."""

    kind: str  # "reminder.create" | "event.create" | "memory.write"
    payload: dict[str, Any]
    summary: str  # what a person previewing it reads

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "payload": self.payload, "summary": self.summary}


@dataclass
class Step:
    name: str
    started_at: datetime
    detail: dict[str, Any] = field(default_factory=dict)
    reads: list[dict[str, Any]] = field(default_factory=list)
    writes: list[dict[str, Any]] = field(default_factory=list)
    duration_ms: int = 0
    error: str = ""

    def as_json(self) -> dict[str, Any]:
        out = {
            "step": self.name,
            "started_at": iso_time(self.started_at),
            "duration_ms": self.duration_ms,
            "reads": self.reads,
            "writes": self.writes,
            "detail": self.detail,
        }
        if self.error:
            out["error"] = self.error
        return out


def agent_context(agent: str, task: AgentTask) -> Context:
    """The acting party of everything a task does: the agent, naming the task."""
    return Context(Actor("agent", f"{agent}:{task.public_id}"))


class Run:
    def __init__(self, *, task: AgentTask, agent: AgentType, user: User) -> None:
        self.task = task
        self.agent = agent
        self.user = user
        self.preview = task.mode == AgentTask.Mode.PREVIEW
        self.params: dict[str, Any] = task.params or {}
        self.text: str = task.task
        self.now = timezone.now()
        self.ctx = agent_context(agent.name, task)
        self.grant = gateway.Grant(frozenset(agent.permissions), agent.tiers)
        self.reader = gateway.Reader(
            "agent", task.public_id, agent=agent.name, preview=self.preview
        )
        self.steps: list[Step] = []
        self.writes: list[Write] = []
        self._checked, self._stopped = time.monotonic(), False

    def stopped(self) -> bool:
        """Whether the task was cancelled (or timed out by the sweep) meanwhile:
        this execution no longer holds it. Asks PostgreSQL at most every
        STOP_CHECK_SECONDS; for loops that may run long (the sandbox)."""
        now = time.monotonic()
        if now - self._checked >= STOP_CHECK_SECONDS:
            self._checked = now
            self._stopped = not AgentTask.objects.filter(
                pk=self.task.pk, claim=self.task.claim, status=AgentTask.Status.RUNNING
            ).exists()
        return self._stopped

    @property
    def time_zone(self) -> str:
        return getattr(self.user, "time_zone", "") or "UTC"

    @contextmanager
    def step(self, name: str, **detail: Any) -> Iterator[Step]:
        step = Step(name=name, started_at=timezone.now(), detail=dict(detail))
        self.steps.append(step)
        t0 = time.monotonic()
        try:
            yield step
        except BaseException as exc:
            step.error = type(exc).__name__
            raise
        finally:
            step.duration_ms = int((time.monotonic() - t0) * 1000)

    def _current(self) -> Step:
        if not self.steps:
            with self.step("run"):
                pass
        return self.steps[-1]

    def recall(self, query: str, limit: int) -> list[gateway.Recalled]:
        """The user's memories for `query` through the gateway (403 without
        memory.read), each read audited and listed in the current step."""
        with self._refused():
            found = gateway.recall(
                user=self.user, query=query, limit=limit, ctx=self.ctx, grant=self.grant
            )
        gateway.record_reads(
            ctx=self.ctx, user=self.user, reader=self.reader, used=found
        )
        self._current().reads.extend(
            {
                "memory_id": r.memory_id,
                "tier": r.tier,
                "query": query[:200],
                "digest": gateway.content_digest(r.content),
            }
            for r in found
        )
        return found

    def write(self, kind: str, payload: dict[str, Any], summary: str) -> None:
        """Plan a change. A memory write is checked against the grant now, so a
        preview refuses what the run would refuse."""
        if kind == "memory.write":
            with self._refused():
                gateway.authorize(
                    ctx=self.ctx,
                    user=self.user,
                    grant=self.grant,
                    permission="memory.write",
                    tier=payload.get("tier", gateway.Tier.SHORT_TERM),
                )
        write = Write(kind, payload, summary[:500])
        self.writes.append(write)
        self._current().writes.append({"kind": kind, "summary": write.summary})

    @contextmanager
    def _refused(self) -> Iterator[None]:
        """A memory access the agent's grant lacks is a capability violation."""
        try:
            yield
        except gateway.PermissionDenied as exc:
            record_violation(
                ctx=self.ctx,
                user=self.user,
                agent=self.agent.name,
                rule="capability",
                details={**exc.details, "task": self.task.public_id},
            )
            raise

    def trace(self) -> list[dict[str, Any]]:
        return [s.as_json() for s in self.steps]
