"""Prometheus metrics of the chat app (no per-user labels, ever)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

chat_requests = Counter(
    "kimberly_chat_requests",
    "Chat messages answered, by result (ok, runner_error, runner_timeout).",
    ["result"],
)
chat_seconds = Histogram(
    "kimberly_chat_seconds",
    "Seconds per chat request by stage (context: memory context assembly; model:"
    " the model runner's reply; total).",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
runner_errors = Counter(
    "kimberly_model_runner_errors",
    "Model runner calls that failed, by runner and kind (timeout, http, connection,"
    " malformed).",
    ["runner", "kind"],
)
runner_tokens = Counter(
    "kimberly_model_tokens",
    "Tokens through the model runner, by runner and kind (prompt, completion).",
    ["runner", "kind"],
)
proposals_discarded = Counter(
    "kimberly_memory_proposals_discarded",
    "Proposed memories the model returned malformed (never stored), by reason.",
    ["reason"],
)
