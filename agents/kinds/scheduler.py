"""The scheduler agent: events and dates found in a text (the task, or
`params.text`), in an .ics file (`params.ics`), or, when the text names no date,
in the memories that match it; kept as events (GET /v1/agents/calendar.ics).
An event found in a sensitive memory is titled by the memory's id only
(gateway.Recalled.quotable), never with its words."""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings

from agents.ics import IcsEvent, parse_ics
from agents.runs import Run
from agents.timeparse import FoundDate, find_dates
from kimberly.api.errors import invalid_field
from kimberly.api.serializers import iso_time
from kimberly.context import Context
from users.models import User

MEMORIES_SEARCHED = 20
SOURCES = ("auto", "text", "memories", "ics")


def validate(*, ctx: Context, user: User, task: str, params: dict[str, Any]) -> None:
    source = params.get("source", "auto")
    if source not in SOURCES:
        raise invalid_field("params.source", f"must be one of {', '.join(SOURCES)}")
    for key in ("text", "ics"):
        if key in params and not isinstance(params[key], str):
            raise invalid_field(f"params.{key}", "must be a string")
    if source == "ics" and "ics" not in params:
        raise invalid_field("params.ics", "is needed with source ics")
    if "ics" in params:
        parse_ics(params["ics"].encode(), max_events=settings.AGENT_ICS_MAX_EVENTS)


def _uid(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32] + "@kimberly"


def _plan(run: Run, event: IcsEvent, source: str, memory_id: str | None) -> None:
    payload = {
        "uid": event.uid,
        "title": event.title[:500],
        "starts_at": event.starts_at.isoformat(),
        "ends_at": event.ends_at.isoformat() if event.ends_at else None,
        "all_day": event.all_day,
        "source": source,
        "memory_id": memory_id.removeprefix("mem_") if memory_id else None,
    }
    run.write(
        "event.create", payload, f"{event.title[:80]} on {event.starts_at:%Y-%m-%d}"
    )


def _found(found: FoundDate, *ref: str, title: str | None = None) -> IcsEvent:
    """The event of a date found; `title` instead of the words around it."""
    return IcsEvent(
        uid=_uid(title or found.title, found.starts_at.isoformat(), *ref),
        title=title or found.title or found.phrase,
        starts_at=found.starts_at,
        ends_at=None,
        all_day=found.all_day,
    )


def run(run: Run) -> dict[str, Any]:
    params, tz = run.params, run.time_zone
    source = params.get("source", "auto")
    planned: list[tuple[IcsEvent, str, str | None]] = []
    if "ics" in params or source == "ics":
        with run.step("import_ics"):
            events = parse_ics(
                params.get("ics", "").encode(), max_events=settings.AGENT_ICS_MAX_EVENTS
            )
            planned += [(e, "ics", None) for e in events]
    else:
        text = params.get("text", run.text)
        if source in ("auto", "text"):
            with run.step("find_in_text") as step:
                found = find_dates(text, tz=tz, now=run.now)
                step.detail["found"] = len(found)
                planned += [(_found(f, "text"), "text", None) for f in found]
        if source == "memories" or (source == "auto" and not planned):
            with run.step("find_in_memories") as step:
                for memory in run.recall(text, MEMORIES_SEARCHED):
                    title = memory.quotable if memory.sensitive else None
                    for f in find_dates(memory.content, tz=tz, now=memory.created_at):
                        event = _found(f, memory.memory_id, title=title)
                        planned.append((event, "memory", memory.memory_id))
                step.detail["found"] = len(planned)
    with run.step("plan"):
        for event, src, memory_id in planned:
            _plan(run, event, src, memory_id)
    return {
        "events": [
            {
                "title": e.title,
                "starts_at": iso_time(e.starts_at),
                "all_day": e.all_day,
                "source": src,
                "memory_id": memory_id,
            }
            for e, src, memory_id in planned
        ]
    }
