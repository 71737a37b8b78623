"""Calendar export and import in iCalendar format (no database)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from icalendar import Calendar

from agents.ics import PRODID, IcsEvent, calendar_ics, parse_ics
from agents.tests.local_zone import process_time_zone
from kimberly.api.errors import BadRequest

EVENTS = [
    IcsEvent(
        uid="e1@kimberly",
        title="Dentist",
        starts_at=datetime(2027, 3, 3, 9, 0, tzinfo=UTC),
        ends_at=datetime(2027, 3, 3, 10, 0, tzinfo=UTC),
        all_day=False,
        description="Bring the X-rays; ask about the filling.",
    ),
    IcsEvent(
        uid="e2@kimberly",
        title="Anna's birthday",
        starts_at=datetime(2027, 5, 12, tzinfo=UTC),
        ends_at=None,
        all_day=True,
    ),
    IcsEvent(
        uid="e3@kimberly",
        title="Conference, day 1 and 2",
        starts_at=datetime(2027, 6, 1, tzinfo=UTC),
        ends_at=datetime(2027, 6, 3, tzinfo=UTC),
        all_day=True,
    ),
]
STAMP = datetime(2026, 12, 2, 13, 0, tzinfo=UTC)


def test_export_then_import_gives_the_same_events():
    data = calendar_ics(EVENTS, name="Alice's calendar", now=STAMP)

    assert parse_ics(data) == EVENTS


def test_export_is_a_valid_vcalendar_with_dates_for_all_day_events():
    data = calendar_ics(EVENTS, name="Alice's calendar", now=STAMP)
    text = data.decode()

    calendar = Calendar.from_ical(data)
    assert calendar["PRODID"] == PRODID == "-//Kimberly//Agents//EN"
    assert calendar["VERSION"] == "2.0"
    assert calendar["X-WR-CALNAME"] == "Alice's calendar"
    assert len(calendar.walk("VEVENT")) == 3
    assert text.count("DTSTAMP:20261202T130000Z") == 3
    assert "DTSTART;VALUE=DATE:20270512" in text
    assert "DTSTART:20270303T090000Z" in text
    assert "\r\n" in text  # RFC 5545 line endings


def test_an_empty_calendar_exports():
    calendar = Calendar.from_ical(calendar_ics([], name="empty"))

    assert calendar.walk("VEVENT") == []


HAND_WRITTEN = b"""BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Somebody//Handmade//EN
BEGIN:VTIMEZONE
TZID:Europe/Berlin
BEGIN:DAYLIGHT
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
DTSTART:19700329T020000
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU
END:DAYLIGHT
BEGIN:STANDARD
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
DTSTART:19701025T030000
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU
END:STANDARD
END:VTIMEZONE
BEGIN:VEVENT
UID:standup-1
SUMMARY:Standup
DTSTART;TZID=Europe/Berlin:20270329T090000
DTEND;TZID=Europe/Berlin:20270329T091500
END:VEVENT
BEGIN:VEVENT
UID:floating-1
SUMMARY:Floating lunch
DTSTART:20270401T120000
DURATION:PT1H
END:VEVENT
BEGIN:VEVENT
SUMMARY:Holiday without a UID
DTSTART;VALUE=DATE:20270501
END:VEVENT
BEGIN:VEVENT
SUMMARY:Broken start is skipped
DTSTART:notadate
END:VEVENT
END:VCALENDAR
"""


def test_import_reads_tzid_floating_and_date_values():
    # a floating time must not be read in the process's local zone
    with process_time_zone("America/New_York"):
        standup, lunch, holiday = parse_ics(HAND_WRITTEN)

    # 09:00 CEST (the day after the change to summer time) is 07:00 UTC.
    assert standup == IcsEvent(
        "standup-1",
        "Standup",
        datetime(2027, 3, 29, 7, 0, tzinfo=UTC),
        datetime(2027, 3, 29, 7, 15, tzinfo=UTC),
        False,
    )
    # no TZID and no Z: taken as UTC; DURATION gives the end
    assert (lunch.starts_at, lunch.ends_at) == (
        datetime(2027, 4, 1, 12, 0, tzinfo=UTC),
        datetime(2027, 4, 1, 13, 0, tzinfo=UTC),
    )
    assert (holiday.all_day, holiday.starts_at) == (
        True,
        datetime(2027, 5, 1, tzinfo=UTC),
    )


def test_a_missing_uid_is_generated_stably_from_the_content():
    first = parse_ics(HAND_WRITTEN)[2].uid
    again = parse_ics(HAND_WRITTEN)[2].uid
    other = parse_ics(HAND_WRITTEN.replace(b"20270501", b"20270502"))[2].uid

    assert first == again
    assert first != other
    assert first.endswith("@import.kimberly")


def test_a_long_summary_is_trimmed_to_500_characters():
    data = calendar_ics(
        [IcsEvent("long", "x" * 2000, datetime(2027, 1, 1, tzinfo=UTC), None, True)],
        name="n",
    )

    (event,) = parse_ics(data)

    assert event.title == "x" * 500


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"\xff\xfe\x00\x01",
        b"%PDF-1.7\n",
        b"BEGIN:VEVENT\r\nSUMMARY:x\r\nDTSTART:20270101T000000Z\r\nEND:VEVENT\r\n",
        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n",
        b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:bad\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
    ],
)
def test_anything_but_a_calendar_with_events_is_invalid_ics(data):
    with pytest.raises(BadRequest) as caught:
        parse_ics(data)

    assert caught.value.code == "invalid_ics"
    assert caught.value.status == 400


def test_more_events_than_allowed_is_too_many_events():
    data = calendar_ics(EVENTS, name="n")

    assert len(parse_ics(data, max_events=3)) == 3
    with pytest.raises(BadRequest) as caught:
        parse_ics(data, max_events=2)

    assert caught.value.code == "too_many_events"
    assert caught.value.details == {"events": 3, "max_events": 2}
