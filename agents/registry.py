"""The agent types Kimberly has, declared in code; their on/off state is in the database.

Each type says what it may do (permissions, the memory tiers it may touch), how
risky it is, how long a task may run, and whether a task may be retried. The
memory gateway checks these permissions on every read and write an agent makes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Risk = Literal["low", "medium", "high"]
PERMISSIONS = ("memory.read", "memory.write", "network", "code.exec")
ALL_TIERS = ("short-term", "long-term", "permanent")


@dataclass(frozen=True)
class AgentType:
    name: str
    description: str
    risk: Risk
    permissions: tuple[str, ...]
    tiers: tuple[str, ...]  # the memory tiers its reads and writes may touch
    default_timeout: int  # seconds
    max_timeout: int  # seconds
    idempotent: bool  # a failed task may be retried
    # Committing a preview runs the task (its work is an action, like running
    # code) rather than applying the planned writes.
    rerun_on_commit: bool = False


AGENT_TYPES: dict[str, AgentType] = {
    agent.name: agent
    for agent in (
        AgentType(
            name="reminder",
            description="Time-based follow-ups delivered back into your"
            " short-term memory (and to your webhook, if you set one).",
            risk="low",
            permissions=("memory.write",),
            tiers=("short-term",),
            default_timeout=60,
            max_timeout=300,
            idempotent=True,
        ),
        AgentType(
            name="scheduler",
            description="Finds dates and events in a text or in your memories,"
            " keeps them as events, exports a calendar (.ics).",
            risk="low",
            permissions=("memory.read",),  # events are its own store, not memory
            tiers=ALL_TIERS,
            default_timeout=60,
            max_timeout=300,
            idempotent=True,
        ),
        AgentType(
            name="researcher",
            description="Multi-query research over your own memories and"
            " documents, with citations; keeps the digest in your short-term"
            " memory when you ask (params.save).",
            risk="medium",
            permissions=("memory.read", "memory.write"),
            tiers=ALL_TIERS,
            default_timeout=60,
            max_timeout=300,
            idempotent=True,
        ),
        AgentType(
            name="coder",
            description="Runs a small Python program in a sandbox: no network,"
            " no view of your files, limited CPU, memory, files and time.",
            risk="high",
            permissions=("code.exec",),
            tiers=(),
            default_timeout=60,
            max_timeout=300,
            idempotent=False,
            rerun_on_commit=True,
        ),
    )
}


def agent_type(name: str) -> AgentType | None:
    return AGENT_TYPES.get(name)
