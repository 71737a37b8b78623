"""How an agent task is shown: the same fields in the API (agents.apis.tasks)
and on the Agents screen (web.agent_presenters), with one rule for what is
withheld when memories the task used have changed since."""

from __future__ import annotations

from typing import Any

from agents import selectors
from agents.models import AgentTask
from kimberly.api.serializers import iso_time

WITHHELD = {"withheld": True, "reason": "memories it used have changed or are gone"}


def task_out(t: AgentTask, *, full: bool = True) -> dict[str, Any]:
    """A task as the API shows it. The list (`full=False`) leaves out the result
    and the trace. A result built on memories that have since been deleted,
    archived, made sensitive or edited is withheld, like its planned writes."""
    stale = selectors.stale_reads(t) if full else []
    plan = [{"kind": w["kind"], "summary": w["summary"]} for w in t.plan]
    out: dict[str, Any] = {
        "task_id": t.public_id,
        "agent": t.agent,
        "status": t.status,
        "task": t.task,
        "routed": t.routed,
        "preview": t.preview,
        "timeout": t.timeout,
        "attempts": t.attempts,
        "result": (WITHHELD if stale else t.result) if full else None,
        "error": t.error or None,
        "planned_writes": [{**w, "summary": ""} for w in plan] if stale else plan,
        "stale_memories": stale,
        "trace": t.trace if full else [],
        "created_at": iso_time(t.created_at),
        "started_at": iso_time(t.started_at),
        "finished_at": iso_time(t.finished_at),
    }
    return out
