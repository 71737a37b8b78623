"""iCalendar (RFC 5545) export and import of the scheduler's events.

Times are exported in UTC. An all-day event is a DATE value; in an IcsEvent
its `starts_at` (and `ends_at`) is 00:00 UTC of that calendar day, like
timeparse.FoundDate. On import a date-time with a TZID is converted to UTC; a
floating one (no TZID, no "Z") or one whose TZID is unknown and has no
VTIMEZONE is taken as UTC, because the file does not say where it is meant.
Recurrence rules are not expanded: a recurring event is imported once, at its
first start.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from icalendar import Calendar, Component, Event

from kimberly.api.errors import BadRequest

PRODID = "-//Kimberly//Agents//EN"
MAX_SUMMARY_CHARS = 500
MAX_DESCRIPTION_CHARS = 10_000


@dataclass(frozen=True)
class IcsEvent:
    """One calendar event; times aware (UTC after import)."""

    uid: str
    title: str
    starts_at: datetime
    ends_at: datetime | None
    all_day: bool
    description: str = ""


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _event(item: IcsEvent, stamp: datetime) -> Event:
    event = Event()
    event.add("uid", item.uid)
    event.add("dtstamp", stamp)
    event.add("summary", item.title)
    if item.all_day:
        event.add("dtstart", item.starts_at.date())
        if item.ends_at is not None:
            event.add("dtend", item.ends_at.date())
    else:
        event.add("dtstart", _utc(item.starts_at))
        if item.ends_at is not None:
            event.add("dtend", _utc(item.ends_at))
    if item.description:
        event.add("description", item.description)
    return event


def calendar_ics(
    events: Iterable[IcsEvent], *, name: str, now: datetime | None = None
) -> bytes:
    """A VCALENDAR with `events`; DTSTAMP is `now` (default: the current time)."""
    stamp = _utc(now) if now is not None else datetime.now(UTC)
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("name", name)
    calendar.add("x-wr-calname", name)
    for item in events:
        calendar.add_component(_event(item, stamp.replace(microsecond=0)))
    return calendar.to_ical()


def _invalid(message: str) -> BadRequest:
    return BadRequest(message, code="invalid_ics")


def _when(value: object) -> tuple[datetime, bool] | None:
    """(UTC start, all_day) from a decoded DTSTART/DTEND, or None if unusable."""
    if isinstance(value, datetime):
        return _utc(value), False
    if isinstance(value, date):
        return datetime.combine(value, time(0), tzinfo=UTC), True
    return None


def _decoded(component: Component, key: str) -> object:
    try:
        return component.decoded(key) if key in component else None
    except (ValueError, TypeError, KeyError):
        return None


def _stable_uid(title: str, starts_at: datetime, description: str) -> str:
    digest = hashlib.sha256(
        "\x1f".join([title, starts_at.isoformat(), description]).encode()
    ).hexdigest()
    return f"{digest[:32]}@import.kimberly"


def _text(component: Component, key: str, limit: int) -> str:
    value = component.get(key)
    return str(value).strip()[:limit] if value is not None else ""


def _imported(component: Component) -> IcsEvent | None:
    """The IcsEvent of one VEVENT, or None when it has no usable DTSTART."""
    start = _when(_decoded(component, "dtstart"))
    if start is None:
        return None
    starts_at, all_day = start
    end = _when(_decoded(component, "dtend"))
    ends_at = end[0] if end is not None else None
    duration = _decoded(component, "duration")
    if ends_at is None and isinstance(duration, timedelta):
        ends_at = starts_at + duration
    title = _text(component, "summary", MAX_SUMMARY_CHARS)
    description = _text(component, "description", MAX_DESCRIPTION_CHARS)
    uid = _text(component, "uid", 255) or _stable_uid(title, starts_at, description)
    return IcsEvent(uid, title, starts_at, ends_at, all_day, description)


def _safely_imported(component: Component) -> IcsEvent | None:
    try:
        return _imported(component)
    except (OverflowError, ValueError):  # a date or duration out of range
        return None


def parse_ics(data: bytes, *, max_events: int = 1000) -> list[IcsEvent]:
    """The VEVENTs of an .ics file; VEVENTs without a usable DTSTART are skipped.
    400 invalid_ics when it is not a calendar or has no event, too_many_events
    over `max_events`."""
    try:
        calendar = Calendar.from_ical(data)
    except (ValueError, TypeError, KeyError, IndexError, UnicodeError) as exc:
        raise _invalid("The file is not an iCalendar (.ics) file.") from exc
    if not isinstance(calendar, Calendar) or calendar.name != "VCALENDAR":
        raise _invalid("The file is not an iCalendar (.ics) file.")
    components = calendar.walk("VEVENT")
    if len(components) > max_events:
        raise BadRequest(
            f"The calendar has {len(components)} events; at most {max_events} "
            "can be imported at once.",
            code="too_many_events",
            details={"events": len(components), "max_events": max_events},
        )
    events = [e for e in (_safely_imported(c) for c in components) if e is not None]
    if not events:
        raise _invalid("The calendar has no event with a start date.")
    return events
