"""Settings of chat and the model runner (imported by base.py)."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from kimberly.env import env_bool, env_float, env_int, env_opt, env_str

# --- Model runner ----------------------------------------------------------------
# An OpenAI-compatible server (llama.cpp, Ollama, vLLM or a hosted API), e.g.
# http://127.0.0.1:11434/v1. Unset: the offline runner answers from memory alone.
LLM_BASE_URL = env_opt("LLM_BASE_URL")
LLM_MODEL = env_str("LLM_MODEL", "llama3.1")
LLM_API_KEY = env_opt("LLM_API_KEY")
# Seconds the reply may take to start: the whole of a plain (non-streamed) reply,
# the first chunk of a streamed one; then also the longest pause between two
# chunks of a stream. The window counts from the call's start and holds every
# retry and backoff pause too, so no retry ever stretches the wait for a reply.
LLM_TIMEOUT_SECONDS = env_float("LLM_TIMEOUT_SECONDS", 60.0)
# Seconds a streamed call may take in all, however steadily it streams: a slow
# CPU model gets to finish (512 tokens at 2 a second), a server that never stops
# does not keep a request and a worker forever.
LLM_MAX_SECONDS = env_float("LLM_MAX_SECONDS", 300.0)
if not 0 < LLM_TIMEOUT_SECONDS <= LLM_MAX_SECONDS:
    raise ImproperlyConfigured(
        "LLM_TIMEOUT_SECONDS must be above 0 and at most LLM_MAX_SECONDS"
    )
# Retries of a call that failed before any of the reply arrived (connection
# errors, 429 and 5xx), with exponential backoff from LLM_RETRY_BACKOFF_SECONDS;
# a retry whose pause would pass LLM_TIMEOUT_SECONDS is not made.
LLM_RETRIES = env_int("LLM_RETRIES", 2)
LLM_RETRY_BACKOFF_SECONDS = env_float("LLM_RETRY_BACKOFF_SECONDS", 0.5)
# The model's context window in tokens: system text, memories, turns and the
# reply (LLM_REPLY_TOKENS) must fit in it.
LLM_CONTEXT_TOKENS = env_int("LLM_CONTEXT_TOKENS", 4096)
LLM_REPLY_TOKENS = env_int("LLM_REPLY_TOKENS", 512)

# --- Chat --------------------------------------------------------------------------
# Memories retrieved per message, and earlier turns sent with it.
CHAT_CONTEXT_MEMORIES = env_int("CHAT_CONTEXT_MEMORIES", 8)
CHAT_HISTORY_TURNS = env_int("CHAT_HISTORY_TURNS", 6)
# Propose durable memories after each exchange (only with a model runner).
CHAT_PROPOSALS = env_bool("CHAT_PROPOSALS", True)
# Chat messages per user per window (each may cost a model call); then 429.
CHAT_RATE_PER_USER = env_int("CHAT_RATE_PER_USER", 30)
CHAT_RATE_WINDOW_SECONDS = env_int("CHAT_RATE_WINDOW_SECONDS", 60)
