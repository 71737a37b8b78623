"""Writes of the agents app: switches, tasks and their executions, reminders, events."""

from agents.services.switches import (
    agent_switch_set,
    known_agent,
    user_agent_switch_set,
)

__all__ = ["agent_switch_set", "known_agent", "user_agent_switch_set"]
