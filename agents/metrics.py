"""Prometheus metrics of the agents app (no per-user labels, ever)."""

from __future__ import annotations

from prometheus_client import Counter

webhook_deliveries = Counter(
    "kimberly_agent_webhook_deliveries",
    "Webhook delivery attempts by result (ok: a 2xx answer; failed: any other"
    " answer, a timeout or a network error; refused: a destination the policy"
    " forbids, never contacted).",
    ["result"],
)
