"""Reads of the agents app: each declared agent type with its state."""

from __future__ import annotations

from dataclasses import dataclass

from agents.models import AgentSwitch, UserAgentSwitch
from agents.registry import AGENT_TYPES, AgentType
from users.models import User


@dataclass(frozen=True)
class AgentState:
    agent: AgentType
    operator_enabled: bool  # the global switch (./cli agent enable|disable)
    operator_reason: str
    user_enabled: bool | None  # the user's own switch (None: no user asked)

    @property
    def enabled(self) -> bool:
        """May run: on for everyone and, for a user, on for them too."""
        return self.operator_enabled and self.user_enabled is not False


def agent_states(*, user: User | None = None) -> list[AgentState]:
    """Every declared agent type with its switches, in declaration order."""
    switches = {s.agent: s for s in AgentSwitch.objects.all()}
    mine: dict[str, bool] = {}
    if user is not None:
        mine = dict(
            UserAgentSwitch.objects.filter(user=user).values_list("agent", "enabled")
        )
    states = []
    for name, agent in AGENT_TYPES.items():
        switch = switches.get(name)
        states.append(
            AgentState(
                agent=agent,
                operator_enabled=switch.enabled if switch else True,
                operator_reason=switch.reason if switch else "",
                user_enabled=mine.get(name, True) if user is not None else None,
            )
        )
    return states


def agent_state(*, name: str, user: User | None = None) -> AgentState | None:
    return next((s for s in agent_states(user=user) if s.agent.name == name), None)


def users_who_turned_off(*, name: str) -> int:
    return UserAgentSwitch.objects.filter(agent=name, enabled=False).count()
