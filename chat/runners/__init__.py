"""Model runners: an OpenAI-compatible HTTP client, or the offline runner."""

from chat.runners.base import (
    Completion,
    ContextNote,
    ModelRunner,
    Prompt,
    RunnerError,
    RunnerTimeout,
    Turn,
    estimate_tokens,
)

__all__ = [
    "Completion",
    "ContextNote",
    "ModelRunner",
    "Prompt",
    "RunnerError",
    "RunnerTimeout",
    "Turn",
    "estimate_tokens",
]
