"""The model runner interface: what chat (and later agents) ask of a language model.

A runner turns a `Prompt` (the user's message, the recent turns and the memories
chosen as context) into a reply. It owns how the prompt is rendered for its
model. Failures are `RunnerError` (502 `model_runner_error`) or `RunnerTimeout`
(504 `model_runner_timeout`); a runner never hangs past its deadline.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

from kimberly.api.errors import ApplicationError


class RunnerError(ApplicationError):
    code = "model_runner_error"
    status = 502


class RunnerTimeout(ApplicationError):
    code = "model_runner_timeout"
    status = 504


@dataclass(frozen=True)
class Turn:
    role: Literal["user", "assistant"]
    content: str


@dataclass(frozen=True)
class ContextNote:
    """One memory given to the model as context."""

    memory_id: str  # "mem_<uuid>"
    tier: str
    content: str
    why: str
    created_at: str  # ISO 8601


@dataclass(frozen=True)
class Prompt:
    message: str  # the user's new message
    history: list[Turn] = field(default_factory=list)  # oldest first
    context: list[ContextNote] = field(default_factory=list)  # best first


@dataclass(frozen=True)
class Completion:
    content: str
    prompt_tokens: int
    completion_tokens: int
    model: str


class ModelRunner(Protocol):
    name: str  # "openai" or "offline": the metrics label
    model: str  # what `usage.model` reports
    configured: bool  # False for the offline runner: no language model behind it

    def reply(self, prompt: Prompt) -> Completion:
        """The whole reply."""
        ...

    def reply_stream(self, prompt: Prompt) -> Iterator[str | Completion]:
        """Text deltas as they come, then exactly one final Completion."""
        ...

    def propose_facts(self, exchange: list[Turn]) -> list[str]:
        """Durable facts about the user worth remembering from one exchange; [] when
        the runner cannot tell. Malformed model output is discarded and counted
        (`kimberly_memory_proposals_discarded`), never returned."""
        ...


def estimate_tokens(text: str) -> int:
    """Tokens of `text` for budgeting: about four characters a token, rounded up."""
    return (len(text) + 3) // 4
