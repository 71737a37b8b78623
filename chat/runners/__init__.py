"""Model runners: an OpenAI-compatible HTTP client, or the offline runner."""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings

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
from chat.runners.offline import OfflineRunner
from chat.runners.openai_compat import OpenAICompatRunner, RunnerConfig
from chat.runners.prompting import fit_prompt

__all__ = [
    "Completion",
    "ContextNote",
    "ModelRunner",
    "Prompt",
    "RunnerError",
    "RunnerTimeout",
    "Turn",
    "estimate_tokens",
    "fit_prompt",
    "get_runner",
    "healthcheck",
]


def get_runner() -> ModelRunner:
    """The runner the LLM_* settings ask for now: OpenAI-compatible when
    LLM_BASE_URL is set, else offline. Cheap per request (cached per settings)."""
    if not settings.LLM_BASE_URL:
        return OfflineRunner()
    return _runner_for(
        RunnerConfig(
            base_url=settings.LLM_BASE_URL,
            model=settings.LLM_MODEL,
            api_key=settings.LLM_API_KEY,
            timeout=settings.LLM_TIMEOUT_SECONDS,
            max_seconds=settings.LLM_MAX_SECONDS,
            retries=settings.LLM_RETRIES,
            backoff=settings.LLM_RETRY_BACKOFF_SECONDS,
            context_tokens=settings.LLM_CONTEXT_TOKENS,
            reply_tokens=settings.LLM_REPLY_TOKENS,
        )
    )


def healthcheck() -> str:
    """`./cli healthcheck`: the model server answers (when one is configured)."""
    runner = get_runner()
    if not isinstance(runner, OpenAICompatRunner):
        return "not configured (LLM_BASE_URL unset): chat answers offline"
    return runner.probe()


# One runner (and its HTTP connection pool) per distinct configuration; a
# settings change (override_settings in tests) simply makes a new key.
@lru_cache(maxsize=8)
def _runner_for(config: RunnerConfig) -> OpenAICompatRunner:
    return OpenAICompatRunner(config)
