"""Settings of agent tasks: per-user limits, time limits, retries and the scans."""

from __future__ import annotations

from kimberly.env import env_float, env_int

# Per user (SPEC §4): this many run at once, the rest wait; this many may wait.
AGENT_MAX_RUNNING = env_int("AGENT_MAX_RUNNING", 3)
AGENT_MAX_QUEUED = env_int("AGENT_MAX_QUEUED", 100)
# A task's timeout is the Celery soft limit; the hard limit (the process is
# killed) comes this much later, so the soft limit can end the task cleanly.
AGENT_HARD_LIMIT_GRACE_SECONDS = env_int("AGENT_HARD_LIMIT_GRACE_SECONDS", 10)
# Executions of an idempotent task that fails unexpectedly (a bug, a lost worker);
# a bad request or a time-out is never retried, nor is a non-idempotent task.
AGENT_TASK_MAX_ATTEMPTS = env_int("AGENT_TASK_MAX_ATTEMPTS", 3)
AGENT_TASK_TEXT_MAX_CHARS = env_int("AGENT_TASK_TEXT_MAX_CHARS", 4000)
AGENT_PARAMS_MAX_BYTES = env_int("AGENT_PARAMS_MAX_BYTES", 200_000)
# A task handed to the broker but not started this long after is sent again
# (its earlier message, if it ever arrives, no longer carries the task's claim).
AGENT_DISPATCH_STALE_SECONDS = env_int("AGENT_DISPATCH_STALE_SECONDS", 600)
AGENT_SWEEP_SECONDS = env_float("AGENT_SWEEP_SECONDS", 60.0)
# Due reminders are delivered by a scan this often.
AGENT_REMINDER_SCAN_SECONDS = env_float("AGENT_REMINDER_SCAN_SECONDS", 30.0)
# How many memories each of the researcher's sub-queries reads.
AGENT_RESEARCH_PER_QUERY = env_int("AGENT_RESEARCH_PER_QUERY", 5)

# Agent tasks run on their own queue and worker (Procfile `agents`), so a burst
# of them never starves embedding or meditation on the default queue.
AGENT_QUEUE = "agents"
CELERY_TASK_ROUTES = {"agents.tasks.*": {"queue": AGENT_QUEUE}}
# Events one .ics import may hold.
AGENT_ICS_MAX_EVENTS = env_int("AGENT_ICS_MAX_EVENTS", 1000)
