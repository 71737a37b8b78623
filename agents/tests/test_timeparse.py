"""Reminder and date phrases read in the user's time zone (no database)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from agents.tests.local_zone import process_time_zone
from agents.timeparse import (
    FoundDate,
    find_dates,
    parse_reminder,
    validate_time_zone,
)
from kimberly.api.errors import BadRequest

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
# Wednesday 2 December 2026, 14:00 in Berlin (13:00 UTC).
NOW = datetime(2026, 12, 2, 14, 0, tzinfo=BERLIN)


def berlin(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN).astimezone(UTC)


@pytest.mark.parametrize(
    ("text", "what", "due", "phrase"),
    [
        (
            "remind me to call mom tomorrow at 9",
            "call mom",
            berlin(2026, 12, 3, 9, 0),
            "tomorrow at 9",
        ),
        (
            "remind me to stretch in 2 hours",
            "stretch",
            berlin(2026, 12, 2, 16, 0),
            None,
        ),
        (
            "remind me to stand up in 10 minutes",
            "stand up",
            berlin(2026, 12, 2, 14, 10),
            None,
        ),
        (
            "remind me to pay rent on Friday at 3pm",
            "pay rent",
            berlin(2026, 12, 4, 15, 0),
            None,
        ),
        (
            "remind me to go to the gym next Monday at 8:30",
            "go to the gym",
            berlin(2026, 12, 7, 8, 30),
            None,
        ),
        # still ahead today / already past today, so tomorrow
        ("remind me to leave at 17:00", "leave", berlin(2026, 12, 2, 17, 0), None),
        ("remind me to leave at 9:00", "leave", berlin(2026, 12, 3, 9, 0), None),
        # a date without a time: DEFAULT_REMINDER_TIME, 09:00
        (
            "remind me to water the plants tomorrow",
            "water the plants",
            berlin(2026, 12, 3, 9, 0),
            "tomorrow",
        ),
        (
            "remind me to renew the passport on 2027-03-04 at 10",
            "renew the passport",
            berlin(2027, 3, 4, 10, 0),
            "on 2027-03-04 at 10",
        ),
        # the time of day apart from the date is joined to it
        (
            "remind me tomorrow to call mom at 9",
            "call mom",
            berlin(2026, 12, 3, 9, 0),
            "tomorrow at 9",
        ),
        (
            "Remind me: dentist at 9pm tomorrow",
            "dentist",
            berlin(2026, 12, 3, 21, 0),
            None,
        ),
        (
            "remind me to call in half an hour",
            "call",
            berlin(2026, 12, 2, 14, 30),
            None,
        ),
        (
            "remind me at 10 a.m. on Monday",
            "Reminder",
            berlin(2026, 12, 7, 10, 0),
            None,
        ),
        (
            "remind me about the meeting today at 16:30",
            "the meeting",
            berlin(2026, 12, 2, 16, 30),
            None,
        ),
        (
            "remind me to buy milk at 9 o'clock",
            "buy milk",
            berlin(2026, 12, 3, 9, 0),
            None,
        ),
        # a quantity is not an offset; "on monday and" loses its "and"
        (
            "remind me to sleep 8 hours on Friday",
            "sleep 8 hours",
            berlin(2026, 12, 4, 9, 0),
            "on Friday",
        ),
        (
            "remind me to call mom on monday and buy milk",
            "call mom and buy milk",
            berlin(2026, 12, 7, 9, 0),
            "on monday",
        ),
    ],
)
def test_reminder_phrases_in_berlin(text, what, due, phrase):
    parsed = parse_reminder(text, tz="Europe/Berlin", now=NOW)

    assert (parsed.what, parsed.due_at) == (what, due)
    assert parsed.due_at.tzinfo == UTC
    if phrase is not None:
        assert parsed.phrase == phrase


def test_in_hours_is_elapsed_time_across_the_spring_dst_change():
    # 28 March 2027, 01:30 CET; at 02:00 the clocks jump to 03:00 CEST.
    now = datetime(2027, 3, 28, 1, 30, tzinfo=BERLIN)

    parsed = parse_reminder("remind me to x in 2 hours", tz="Europe/Berlin", now=now)

    assert parsed.due_at == datetime(2027, 3, 28, 2, 30, tzinfo=UTC)
    assert parsed.due_at.astimezone(BERLIN).hour == 4


def test_a_wall_clock_time_across_the_dst_change_keeps_its_local_time():
    now = datetime(2027, 3, 27, 14, 0, tzinfo=BERLIN)  # Saturday, CET (+1)

    tomorrow = parse_reminder(
        "remind me to x tomorrow at 9", tz="Europe/Berlin", now=now
    )
    in_days = parse_reminder("remind me to x in 2 days", tz="Europe/Berlin", now=now)

    assert tomorrow.due_at == datetime(2027, 3, 28, 7, 0, tzinfo=UTC)  # 09:00 CEST
    assert in_days.due_at == datetime(2027, 3, 29, 12, 0, tzinfo=UTC)  # 14:00 CEST


@pytest.mark.parametrize(
    ("text", "local"),
    [
        ("remind me to x tomorrow at 9", datetime(2026, 12, 3, 9, 0)),
        # 08:00 in New York: 17:00 is today, 7:00 tomorrow
        ("remind me to x at 17:00", datetime(2026, 12, 2, 17, 0)),
        ("remind me to x at 7:00", datetime(2026, 12, 3, 7, 0)),
        ("remind me to x on Friday at 3pm", datetime(2026, 12, 4, 15, 0)),
        ("remind me to x tomorrow", datetime(2026, 12, 3, 9, 0)),
    ],
)
def test_reminders_in_new_york(text, local):
    parsed = parse_reminder(text, tz="America/New_York", now=NOW)

    assert parsed.due_at == local.replace(tzinfo=NEW_YORK).astimezone(UTC)


def test_an_explicit_zone_in_the_text_wins():
    parsed = parse_reminder(
        "remind me to x tomorrow at 10:00 UTC", tz="America/New_York", now=NOW
    )

    assert parsed.due_at == datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def test_a_naive_now_is_utc():
    with process_time_zone("America/New_York"):
        parsed = parse_reminder(
            "remind me to x at 17:00", tz="Europe/Berlin", now=datetime(2026, 12, 2, 13)
        )

    assert parsed.due_at == berlin(2026, 12, 2, 17, 0)


def test_a_time_in_the_past_is_refused_saying_what_was_understood():
    with pytest.raises(BadRequest) as caught:
        parse_reminder("remind me to x yesterday at 9", tz="Europe/Berlin", now=NOW)

    assert caught.value.code == "time_in_past"
    assert "yesterday at 9" in caught.value.message
    assert "2026-12-01 09:00" in caught.value.message
    assert caught.value.details["understood_as"] == "2026-12-01T09:00:00+01:00"


@pytest.mark.parametrize(
    "text", ["remind me to call bob", "", "I have 3 cats", "We may"]
)
def test_no_time_is_no_time_found(text):
    with pytest.raises(BadRequest) as caught:
        parse_reminder(text, tz="Europe/Berlin", now=NOW)

    assert caught.value.code == "no_time_found"
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "name", ["Mars/Olympus", "", "../etc/passwd", "europe/berlin", "localtime"]
)
def test_an_unknown_time_zone_is_refused(name):
    with pytest.raises(BadRequest) as caught:
        parse_reminder("remind me at 9", tz=name, now=NOW)

    assert caught.value.code == "invalid_time_zone"


def test_validate_time_zone_returns_the_name():
    assert validate_time_zone("America/New_York") == "America/New_York"
    assert validate_time_zone("UTC") == "UTC"
    with pytest.raises(BadRequest):
        validate_time_zone("Nowhere/Else")


def test_find_dates_titles_each_mention_by_its_sentence():
    text = "Dentist on March 3 at 10am. Anna's birthday is on 12 May."

    assert find_dates(text, tz="Europe/Berlin", now=NOW) == [
        FoundDate("on March 3 at 10am", berlin(2027, 3, 3, 10, 0), False, "Dentist"),
        FoundDate(
            "on 12 May", datetime(2027, 5, 12, tzinfo=UTC), True, "Anna's birthday"
        ),
    ]


def test_find_dates_splits_clauses_and_reads_iso_dates():
    found = find_dates(
        "Team call Monday 10:00, retro Friday. Flight 2027-01-15 at 7:45; "
        "hotel check-out 2027-01-20",
        tz="Europe/Berlin",
        now=NOW,
    )

    assert [(f.title, f.starts_at, f.all_day) for f in found] == [
        ("Team call", berlin(2026, 12, 7, 10, 0), False),
        ("retro", datetime(2026, 12, 4, tzinfo=UTC), True),
        ("Flight", berlin(2027, 1, 15, 7, 45), False),
        ("hotel check-out", datetime(2027, 1, 20, tzinfo=UTC), True),
    ]


def test_find_dates_ignores_numbers_and_words_dateparser_mistakes_for_dates():
    text = (
        "I have 2 cats and we met on 3 occasions in 1990. We may go. "
        "Fix the 2nd bug on the list."
    )

    assert find_dates(text, tz="Europe/Berlin", now=NOW) == []


def test_find_dates_is_deterministic_and_reads_times_alone():
    text = "Lunch with Sam at noon. Standup at 9:00. Call Anna in 2 hours."

    first = find_dates(text, tz="Europe/Berlin", now=NOW)

    assert first == find_dates(text, tz="Europe/Berlin", now=NOW)
    assert [(f.title, f.starts_at) for f in first] == [
        ("Lunch with Sam", berlin(2026, 12, 3, 12, 0)),  # noon has passed today
        ("Standup", berlin(2026, 12, 3, 9, 0)),
        ("Call Anna", berlin(2026, 12, 2, 16, 0)),
    ]


def test_a_title_is_at_most_200_characters():
    (found,) = find_dates("word " * 100 + "on Friday", tz="Europe/Berlin", now=NOW)

    assert len(found.title) <= 200
    assert found.phrase == "on Friday"


def test_dates_out_of_range_are_a_clear_400_or_skipped_never_a_crash():
    from agents.ics import parse_ics
    from agents.timeparse import find_dates, parse_reminder
    from kimberly.api.errors import BadRequest

    now = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)
    with pytest.raises(BadRequest) as exc:
        parse_reminder(
            "remind me to pay rent on 9999-12-31 at 23:00",
            tz="America/New_York",
            now=now,
        )
    assert exc.value.code == "no_time_found"
    found = find_dates(
        "Rent on 9999-12-31 at 23:00. Dentist on March 3 2027 at 10am.",
        tz="America/New_York",
        now=now,
    )
    assert [f.title for f in found] == ["Dentist"]
    ics = (
        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\n"
        b"BEGIN:VEVENT\r\nUID:a\r\nSUMMARY:Far\r\n"
        b"DTSTART;TZID=America/New_York:99991231T230000\r\nEND:VEVENT\r\n"
        b"BEGIN:VEVENT\r\nUID:b\r\nSUMMARY:Near\r\nDTSTART:20270303T100000Z\r\n"
        b"END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    assert [e.title for e in parse_ics(ics)] == ["Near"]
