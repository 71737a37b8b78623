"""./cli agent status | enable TYPE | disable TYPE [--reason TEXT]."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from agents import selectors, services
from agents.registry import AGENT_TYPES
from kimberly.api.errors import ApplicationError
from kimberly.context import Actor, Context


class Command(BaseCommand):
    help = "Show the agent types and turn one on or off for everyone (audited)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("status", help="each agent type: state, risk, permissions")
        for action in ("enable", "disable"):
            p = sub.add_parser(action, help=f"{action} an agent type for everyone")
            p.add_argument("agent", choices=list(AGENT_TYPES))
            p.add_argument("--reason", default="", help="kept with the switch")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action in ("enable", "disable"):
            try:
                services.agent_switch_set(
                    ctx=Context(Actor.system("cli")),
                    agent=options["agent"],
                    enabled=action == "enable",
                    reason=options["reason"],
                )
            except ApplicationError as exc:
                raise CommandError(exc.message) from exc
            self.stdout.write(f"{options['agent']}: {action}d")
        self._status()

    def _status(self) -> None:
        self.stdout.write(
            f"{'agent':<12}{'state':<10}{'risk':<8}{'users off':>10}  permissions"
        )
        for s in selectors.agent_states():
            state = "enabled" if s.operator_enabled else "disabled"
            off = selectors.users_who_turned_off(name=s.agent.name)
            perms = ", ".join(s.agent.permissions)
            reason = f"  ({s.operator_reason})" if s.operator_reason else ""
            self.stdout.write(
                f"{s.agent.name:<12}{state:<10}{s.agent.risk:<8}{off:>10}  {perms}{reason}"
            )
