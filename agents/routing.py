"""Choosing an agent from a task's text, by deterministic rules.

The first rule that matches wins, in the order below (most specific first), so
"remind me to research flights" is a reminder. Nothing matching is 400
`no_agent_fits`, naming the agents there are.
"""

from __future__ import annotations

import re
from typing import Any

from agents.registry import AGENT_TYPES, AgentType
from kimberly.api.errors import ApplicationError

RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("reminder", re.compile(r"\b(remind|reminder|don'?t let me forget)\b", re.I)),
    (
        "coder",
        re.compile(r"```|\b(run|execute|evaluate)\b.*\b(code|python|script)\b", re.I),
    ),
    (
        "scheduler",
        re.compile(
            r"\b(schedule|calendar|events?|appointments?|meetings?|dates?|"
            r"when (is|was|are|were))\b",
            re.I,
        ),
    ),
    (
        "researcher",
        re.compile(
            r"\b(research|find out|look up|summari[sz]e|what do i know|"
            r"what did i (say|write|note)|tell me about|compare)\b",
            re.I,
        ),
    ),
)


class NoAgentFits(ApplicationError):
    code = "no_agent_fits"
    status = 400


def route(task: str, params: dict[str, Any]) -> AgentType:
    """The agent for `task` (a `code` param means the coder)."""
    if "code" in params:
        return AGENT_TYPES["coder"]
    for name, pattern in RULES:
        if pattern.search(task):
            return AGENT_TYPES[name]
    raise NoAgentFits(
        "No agent fits this task; name one with `agent`.",
        details={"agents": list(AGENT_TYPES)},
    )
