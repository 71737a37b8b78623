"""The reminder agent: "remind me to call mom tomorrow at 9", in the user's time
zone; the reminder is kept, and delivered when due (agents.services.reminders)."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from django.utils import timezone

from agents.runs import Run
from agents.timeparse import parse_reminder
from kimberly.api.serializers import iso_time
from kimberly.context import Context
from users.models import User


def _time_zone(user: User) -> str:
    return getattr(user, "time_zone", "") or "UTC"


def validate(*, ctx: Context, user: User, task: str, params: dict[str, Any]) -> None:
    parse_reminder(task, tz=_time_zone(user), now=timezone.now())  # 400 if not


def run(run: Run) -> dict[str, Any]:
    with run.step("parse", time_zone=run.time_zone) as step:
        parsed = parse_reminder(run.text, tz=run.time_zone, now=run.now)
        local = parsed.due_at.astimezone(ZoneInfo(run.time_zone))
        step.detail.update(phrase=parsed.phrase, due_at=iso_time(parsed.due_at))
    with run.step("plan"):
        run.write(
            "reminder.create",
            {
                "what": parsed.what[:500],
                "due_at": parsed.due_at.isoformat(),
                "time_zone": run.time_zone,
            },
            f"Remind you to {parsed.what} on {local:%a %d %b %Y at %H:%M}"
            f" ({run.time_zone}).",
        )
    return {
        "what": parsed.what,
        "due_at": iso_time(parsed.due_at),
        "due_local": local.isoformat(),
        "time_zone": run.time_zone,
    }
