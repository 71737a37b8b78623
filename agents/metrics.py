"""Prometheus metrics of the agents app (no per-user labels, ever).

What the `agent_error_rate_high` and `agent_timeout` alerts read: tasks by
agent and final status, run time per agent, the queue depth per agent (counted
in PostgreSQL at scrape time) and sandbox violations.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

tasks = Counter(
    "kimberly_agent_tasks",
    "Agent task executions by agent and the status they ended in.",
    ["agent", "status"],
)
task_seconds = Histogram(
    "kimberly_agent_task_seconds",
    "Seconds per agent task execution, by agent.",
    ["agent"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
sandbox_violations = Counter(
    "kimberly_agent_sandbox_violations",
    "Agent actions refused by the deny list or a capability policy, by agent.",
    ["agent"],
)


class AgentQueueCollector:
    """kimberly_agent_queue_depth{agent}: tasks waiting (queued), at scrape time."""

    def collect(self) -> Iterator[Metric]:
        from django.db.models import Count

        from agents.models import AgentTask
        from agents.registry import AGENT_TYPES

        depth = dict.fromkeys(AGENT_TYPES, 0)
        for row in (
            AgentTask.objects.filter(status=AgentTask.Status.QUEUED)
            .values("agent")
            .annotate(n=Count("pk"))
        ):
            depth[row["agent"]] = row["n"]
        gauge = GaugeMetricFamily(
            "kimberly_agent_queue_depth",
            "Agent tasks waiting to run, by agent.",
            labels=["agent"],
        )
        for agent, n in depth.items():
            gauge.add_metric([agent], n)
        yield gauge


webhook_deliveries = Counter(
    "kimberly_agent_webhook_deliveries",
    "Webhook delivery attempts by result (ok: a 2xx answer; failed: any other"
    " answer, a timeout or a network error; refused: a destination the policy"
    " forbids, never contacted).",
    ["result"],
)
