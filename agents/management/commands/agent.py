"""./cli agent status | enable TYPE | disable TYPE [--reason TEXT] | tasks --user U."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from agents import selectors, services
from agents.registry import AGENT_TYPES
from kimberly.api.errors import ApplicationError
from kimberly.context import Actor, Context
from kimberly.management.operator import OperatorCommand
from users.models import User


class Command(OperatorCommand):
    rls_reason = "operator: agent types for everyone, a user's tasks"
    help = (
        "Show the agent types (state, running, queued, failures and time-outs in"
        " the last hour, p95 run time), turn one on or off for everyone (audited;"
        " disabling cancels its waiting tasks, running ones end within their time"
        " limit), or list a user's tasks."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("status", help="each agent type: state, load, risk")
        for action in ("enable", "disable"):
            p = sub.add_parser(action, help=f"{action} an agent type for everyone")
            p.add_argument("agent", choices=list(AGENT_TYPES))
            p.add_argument("--reason", default="", help="kept with the switch")
        p = sub.add_parser("tasks", help="a user's latest tasks")
        p.add_argument("--user", required=True, help="the user's email")
        p.add_argument("--limit", type=int, default=20)

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "tasks":
            return self._tasks(options["user"], options["limit"])
        if action in ("enable", "disable"):
            try:
                switch = services.agent_switch_set(
                    ctx=Context(Actor.system("cli")),
                    agent=options["agent"],
                    enabled=action == "enable",
                    reason=options["reason"],
                )
            except ApplicationError as exc:
                raise CommandError(exc.message) from exc
            self.stdout.write(f"{options['agent']}: {action}d")
            if action == "disable":
                running = selectors.agent_stats(name=options["agent"]).running
                self.stdout.write(
                    f"  {getattr(switch, 'cancelled', 0)} waiting task(s) cancelled;"
                    f" {running} running task(s) end within their time limit"
                )
        self._status()

    def _status(self) -> None:
        self.stdout.write(
            f"{'agent':<12}{'state':<10}{'running':>8}{'queued':>8}{'failed/h':>9}"
            f"{'timeout/h':>10}{'p95 s':>8}  {'risk':<7}{'users off':>9}  permissions"
        )
        for s in selectors.agent_states():
            name = s.agent.name
            state = "enabled" if s.operator_enabled else "disabled"
            st = selectors.agent_stats(name=name)
            p95 = f"{st.p95_seconds:.2f}" if st.p95_seconds is not None else "-"
            off = selectors.users_who_turned_off(name=name)
            perms = ", ".join(s.agent.permissions)
            reason = f"  ({s.operator_reason})" if s.operator_reason else ""
            self.stdout.write(
                f"{name:<12}{state:<10}{st.running:>8}{st.queued:>8}"
                f"{st.failed_last_hour:>9}{st.timed_out_last_hour:>10}{p95:>8}"
                f"  {s.agent.risk:<7}{off:>9}  {perms}{reason}"
            )

    def _tasks(self, email: str, limit: int) -> None:
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            raise CommandError(f"No user {email}.")
        self.stdout.write(
            f"{'task':<41}{'agent':<12}{'status':<11}{'created':<22}error"
        )
        for t in selectors.tasks_for(user=user)[:limit]:
            error = (t.error or {}).get("code", "")
            self.stdout.write(
                f"{t.public_id:<41}{t.agent:<12}{t.status:<11}"
                f"{t.created_at:%Y-%m-%dT%H:%M:%SZ}  {error}"
            )
