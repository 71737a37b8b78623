"""Dates and times in the user's own words, read in the user's time zone.

dateparser finds and reads the phrases; this module fixes what it gets wrong
and decides what a phrase means for a reminder or a calendar:

- A bare hour after "at" ("tomorrow at 9") is read as that hour on a 24-hour
  clock (09:00; say "9pm" for the evening). dateparser alone ignores the "9"
  and keeps the current time, or reads "at 9" as the 9th month.
- A date without a time ("tomorrow", "on Friday") is a reminder at
  DEFAULT_REMINDER_TIME (09:00) and an all-day event in the calendar.
- A time without a date ("at 17:00") is today if still ahead, else tomorrow.
- "in N minutes/hours" is exact elapsed time (so it is right across a DST
  change); "in N days/weeks" keeps the wall-clock time.
- A phrase counts only when it names a month, a weekday, a relative word
  (today, tomorrow, next ..., in N hours), a time of day (10am, 10:30, noon)
  or an ISO date: dateparser's search also "finds" dates in words like "We",
  "may", "the 2nd" or "in 1990".

English only (languages=["en"], so the result does not depend on language
detection). Results are deterministic given `now`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from dateparser import parse as dp_parse
from dateparser.search import search_dates

from kimberly.api.errors import BadRequest

DEFAULT_REMINDER_TIME = time(9, 0)
DEFAULT_REMINDER_TEXT = "Reminder"
MAX_TITLE_CHARS = 200
MAX_PHRASE_CHARS = 100  # of the user's phrase echoed in an error message

_AMPM = r"(?:am|pm|a\.m\.|p\.m\.)"
_TIME = (
    rf"(?<![\w:])(?:(?:[01]?\d|2[0-3]):[0-5]\d(?:\s*{_AMPM})?"
    rf"|(?:1[0-2]|0?[1-9])\s*{_AMPM}|noon|midnight|tonight)(?!\w)"
)
TIME_RE = re.compile(_TIME, re.I)
_NUM = r"(?:\d+|an?|one)"
SUBDAY_RE = re.compile(
    rf"^in\s+(?:(?P<n>{_NUM})\s+(?P<unit>sec(?:ond)?s?|min(?:ute)?s?|h(?:ou)?rs?)"
    r"|(?P<half>half\s+an?\s+hour))$",
    re.I,
)
DAYS_RE = re.compile(rf"^in\s+{_NUM}\s+(?:days?|weeks?|months?|years?)$", re.I)
_MONTHS = (
    r"january|february|april|june|july|august|september|october|november|december"
    r"|jan|feb|mar|apr|jun|jul|aug|sept?|oct|nov|dec"
)
_WEEKDAYS = (
    r"monday|tuesday|wednesday|thursday|friday|saturday|sunday"
    r"|mon|tues?|wed|thu(?:rs?)?|fri"
)
# "may" and "march" are also verbs: they count only next to a day number.
_AMBIGUOUS_MONTH = r"\d{1,2}(?:st|nd|rd|th)?\s+(?:may|march)|(?:may|march)\s+\d{1,2}"
_RELATIVE = (
    r"today|tonight|tomorrow|yesterday|next\s+\w+|last\s+\w+|this\s+(?:week|month)"
    rf"|in\s+(?:{_NUM}|half\s+an?)\s+(?:sec|min|h|day|week|month|year)\w*"
    rf"|{_NUM}\s+(?:min|hour|day|week|month|year)\w*\s+ago"
)
DATEISH_RE = re.compile(
    rf"\b(?:{_MONTHS}|{_WEEKDAYS}|{_AMBIGUOUS_MONTH}|{_RELATIVE})\b"
    rf"|\b\d{{4}}-\d{{2}}-\d{{2}}\b|{_TIME}",
    re.I,
)
# Rewritten before dateparser reads the text: "a.m." → "am", "9 o'clock" →
# "9:00", and a bare hour after "at" gets ":00" ("at 9" alone is September).
_REWRITE_RE = re.compile(
    r"(?P<ampm>\b[ap])\.m\."
    r"|(?P<oclock>\b(?:[01]?\d|2[0-3]))\s*o'?clock\b"
    rf"|(?P<bare>\bat\s+(?:[01]?\d|2[0-3]))(?![\d:]|\.\d|\s*{_AMPM}|\s*o'?clock)",
    re.I,
)
# Offsets in seconds to hours are read here, not by dateparser: it reads "in
# half an hour" as "an hour", and does wall-clock arithmetic across DST.
OFFSET_FIND_RE = re.compile(
    rf"\bin\s+(?:{_NUM}\s+(?:sec(?:ond)?s?|min(?:ute)?s?|h(?:ou)?rs?)"
    r"|half\s+an?\s+hour)\b",
    re.I,
)
_TRAILING_JUNK_RE = re.compile(r"(?:[\s,]+(?:and|or|to|the|at|on|by|in|,))+\s*$", re.I)
# "8 hours on friday": a quantity, not an offset (that would be "in 8 hours").
_LEADING_QUANTITY_RE = re.compile(
    r"^\d+\s+(?:sec|min|hour|day|week|month|year)\w*\s+", re.I
)
_REMIND_PREFIX_RE = re.compile(
    r"^\s*(?:please\s+)?(?:(?:can|could|would)\s+you\s+)?(?:please\s+)?"
    r"(?:remind\s+me|reminder|set\s+a\s+reminder)(?:\s+(?:to|about|that|of)\b)?[\s:,-]*",
    re.I,
)
_EDGE_WORDS = r"to|at|on|by|in|and|then|is|are|was|will\s+be|for|of"
_EDGE_RE = re.compile(
    rf"^(?:(?:{_EDGE_WORDS})\b\s*)+|(?:\s*\b(?:{_EDGE_WORDS}))+$", re.I
)


@dataclass(frozen=True)
class ParsedReminder:
    """What to remind of, and when (aware, UTC); `phrase` is the time as written."""

    what: str
    due_at: datetime
    phrase: str


@dataclass(frozen=True)
class FoundDate:
    """A date mentioned in a text. An all-day date's `starts_at` is 00:00 UTC of
    that calendar day (a calendar date has no time zone; `.date()` gives it)."""

    phrase: str
    starts_at: datetime
    all_day: bool
    title: str


@dataclass(frozen=True)
class _Mention:
    start: int
    end: int
    local: datetime  # aware, in the user's zone
    timed: bool  # names a time of day or an offset in hours or less
    time_only: bool = False  # a time and no date: "at 17:00"
    day_offset: bool = False  # "in 3 days": keeps the current wall-clock time


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    # "localtime" is the server's own zone and "Factory" no zone at all.
    return frozenset(available_timezones()) - {"localtime", "Factory"}


def validate_time_zone(name: str) -> str:
    """`name` if it is an IANA time zone known here, else 400 invalid_time_zone."""
    if not isinstance(name, str) or name not in _zone_names():
        raise BadRequest(
            "Unknown time zone; use an IANA name such as Europe/Berlin.",
            code="invalid_time_zone",
        )
    return name


def _local_now(now: datetime, zone: ZoneInfo) -> datetime:
    # A naive `now` is taken as UTC, never as the server's local time.
    aware = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    return aware.astimezone(zone)


def _rewrite(match: re.Match[str]) -> str:
    if match["ampm"]:
        return f"{match['ampm']}m"
    return f"{match['oclock'] or match['bare']}:00"


def _normalise(text: str) -> tuple[str, list[int]]:
    """`text` rewritten for dateparser, and for each character of the result
    the index of the original character it stands for (to map spans back)."""
    out: list[str] = []
    origin: list[int] = []
    last = 0
    for match in _REWRITE_RE.finditer(text):
        out.append(text[last : match.start()])
        origin.extend(range(last, match.start()))
        new = _rewrite(match)
        out.append(new)
        # the last new character stands for the last replaced one: spans ending
        # in a rewrite end where it did in the original
        origin.extend(
            min(match.start() + i, match.end() - 1) for i in range(len(new) - 1)
        )
        origin.append(match.end() - 1)
        last = match.end()
    out.append(text[last:])
    origin.extend(range(last, len(text)))
    return "".join(out), origin


def _settings(zone: ZoneInfo, now_local: datetime) -> dict[str, Any]:
    return {
        "PREFER_DATES_FROM": "future",
        "TIMEZONE": zone.key,
        "RETURN_AS_TIMEZONE_AWARE": True,
        "RELATIVE_BASE": now_local.replace(tzinfo=None),
    }


def _to_zone(value: datetime, zone: ZoneInfo) -> datetime:
    if getattr(value.tzinfo, "zone", None) == zone.key:
        # dateparser's wall clock in the user's zone: zoneinfo decides the offset
        # (pytz's localisation differs around DST changes).
        return value.replace(tzinfo=None).replace(tzinfo=zone)
    return value.astimezone(zone)  # the phrase named its own zone ("10:00 UTC")


def _offset_from(phrase: str, now: datetime, zone: ZoneInfo) -> datetime:
    """`now` plus "in N minutes" as elapsed time, in the user's zone."""
    match = SUBDAY_RE.match(phrase)
    assert match is not None
    if match["half"]:
        delta = timedelta(minutes=30)
    else:
        n = match["n"].lower()
        count = int(n) if n.isdigit() else 1
        unit = match["unit"].lower()
        seconds = 1 if unit.startswith("s") else 60 if unit.startswith("m") else 3600
        delta = timedelta(seconds=count * seconds)
    return (now.astimezone(UTC) + delta).astimezone(zone)


def _clean_phrase(phrase: str) -> str:
    phrase = _TRAILING_JUNK_RE.sub("", phrase.strip())
    return _LEADING_QUANTITY_RE.sub("", phrase)


def _mention(
    norm: str, start: int, end: int, value: datetime, zone: ZoneInfo, now: datetime
) -> _Mention | None:
    """One dateparser hit, checked and classified; spans are in `norm`."""
    raw = norm[start:end]
    phrase = _clean_phrase(raw)
    if not phrase or not DATEISH_RE.search(phrase):
        return None
    if phrase != raw:
        start += raw.index(phrase)
        end = start + len(phrase)
        reparsed = dp_parse(phrase, languages=["en"], settings=_settings(zone, now))
        if reparsed is None:
            return None
        value = reparsed
    rest = re.sub(r"\b(?:at|on|around|by|the)\b|[\s,]", "", TIME_RE.sub("", phrase))
    timed = TIME_RE.search(phrase) is not None
    return _Mention(
        start,
        end,
        _to_zone(value, zone),
        timed=timed,
        time_only=timed and not rest,
        day_offset=DAYS_RE.match(phrase) is not None,
    )


def _mentions(text: str, zone: ZoneInfo, now: datetime) -> list[_Mention]:
    """Every date or time phrase in `text`, in order; spans index `text`."""
    norm, origin = _normalise(text)
    found = [
        _Mention(m.start(), m.end(), _offset_from(m.group(), now, zone), True)
        for m in OFFSET_FIND_RE.finditer(norm)
    ]
    taken = [(m.start, m.end) for m in found]
    hits = search_dates(norm, languages=["en"], settings=_settings(zone, now)) or []
    cursor = 0
    for phrase, value in hits:
        start = norm.find(phrase, cursor)
        if start < 0:
            continue
        cursor = start + len(phrase)
        if any(start < hi and lo < cursor for lo, hi in taken):
            continue
        mention = _mention(norm, start, cursor, value, zone, now)
        if mention is not None:
            found.append(mention)
    return [
        replace(m, start=origin[m.start], end=origin[m.end - 1] + 1)
        for m in sorted(found, key=lambda m: m.start)
    ]


def _at(day: date, clock: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, clock.replace(tzinfo=None), tzinfo=zone)


def _next_at(clock: time, now: datetime, zone: ZoneInfo) -> datetime:
    """Today at `clock` if that is still ahead of `now`, else tomorrow."""
    today = _at(now.date(), clock, zone)
    return today if today > now else _at(now.date() + timedelta(days=1), clock, zone)


def _remove_spans(text: str, spans: list[tuple[int, int]]) -> str:
    for start, end in sorted(spans, reverse=True):
        text = f"{text[:start]} {text[end:]}"
    text = re.sub(r"\s+", " ", text).strip(" \t,.;:!?-")
    return _EDGE_RE.sub("", text).strip(" \t,.;:!?-")


def _reminder_due(
    mentions: list[_Mention], zone: ZoneInfo, now: datetime
) -> tuple[datetime, list[_Mention]]:
    """The due time meant by the first mention, with a separate time of day
    joined to a date ("tomorrow to call mom at 9"); and the mentions used."""
    first = mentions[0]
    if first.time_only:
        dated = next((m for m in mentions[1:] if not m.timed), None)
        if dated is None:
            return _next_at(first.local.timetz(), now, zone), [first]
        return _at(dated.local.date(), first.local.time(), zone), [first, dated]
    if first.timed or first.day_offset:
        return first.local, [first]
    clock = next((m for m in mentions[1:] if m.time_only), None)
    if clock is None:
        return _at(first.local.date(), DEFAULT_REMINDER_TIME, zone), [first]
    return _at(first.local.date(), clock.local.time(), zone), [first, clock]


def parse_reminder(text: str, *, tz: str, now: datetime) -> ParsedReminder:
    """'remind me to call mom tomorrow at 9' → what 'call mom', due tomorrow
    09:00 in `tz`, as UTC. 400 no_time_found, time_in_past or invalid_time_zone."""
    zone = ZoneInfo(validate_time_zone(tz))
    now_local = _local_now(now, zone)
    prefix = _REMIND_PREFIX_RE.match(text)
    body = text[prefix.end() :] if prefix else text
    try:
        mentions = _mentions(body, zone, now_local)
        due, used = _reminder_due(mentions, zone, now_local) if mentions else (now, [])
    except (OverflowError, ValueError):  # a year 9999 that UTC cannot hold, ...
        raise BadRequest(
            "The date in the reminder is out of range; say when, for example "
            "'tomorrow at 9'.",
            code="no_time_found",
        ) from None
    if not mentions:
        raise BadRequest(
            "Found no date or time in the reminder; say when, for example "
            "'tomorrow at 9', 'on Friday at 3pm' or 'in 2 hours'.",
            code="no_time_found",
        )
    spans = sorted((m.start, m.end) for m in used)
    phrase = " ".join(body[s:e] for s, e in spans)[:MAX_PHRASE_CHARS]
    if due <= now_local:
        understood = due.strftime("%Y-%m-%d %H:%M")
        raise BadRequest(
            f"Understood '{phrase}' as {understood} ({zone.key}), which is in the "
            "past; a reminder needs a time ahead.",
            code="time_in_past",
            details={"phrase": phrase, "understood_as": due.isoformat()},
        )
    what = _remove_spans(body, spans) or DEFAULT_REMINDER_TEXT
    return ParsedReminder(what=what, due_at=due.astimezone(UTC), phrase=phrase)


# A sentence ends at . ! or ? before a capital or digit ("10 a.m. tomorrow" is one).
_SENTENCE_SPLIT_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])|[;\n]+")
_CLAUSE_SPLIT_RE = re.compile(r",|\band\b|\bthen\b", re.I)


def _clauses(sentence: str, mentions: list[_Mention]) -> list[tuple[int, int]]:
    """Bounds of the part of `sentence` each mention belongs to: the whole
    sentence, or with several mentions the comma/and-separated clause."""
    if len(mentions) == 1:
        return [(0, len(sentence))]
    cuts = [0, *[m.start() for m in _CLAUSE_SPLIT_RE.finditer(sentence)], len(sentence)]
    out = []
    for mention in mentions:
        lo = max(c for c in cuts if c <= mention.start)
        hi = min(c for c in cuts if c >= mention.end)
        out.append((lo, hi))
    return out


def _found(
    sentence: str, mention: _Mention, bounds: tuple[int, int], now: datetime
) -> FoundDate:
    zone = mention.local.tzinfo
    assert isinstance(zone, ZoneInfo)
    phrase = sentence[mention.start : mention.end]
    lo, hi = bounds
    title = _remove_spans(sentence[lo:hi], [(mention.start - lo, mention.end - lo)])
    title = title[:MAX_TITLE_CHARS].strip() or phrase
    if mention.time_only:
        starts = _next_at(mention.local.timetz(), now, zone).astimezone(UTC)
        return FoundDate(phrase, starts, all_day=False, title=title)
    if mention.timed:
        return FoundDate(phrase, mention.local.astimezone(UTC), False, title)
    day = datetime.combine(mention.local.date(), time(0), tzinfo=UTC)
    return FoundDate(phrase, day, all_day=True, title=title)


# dateparser's search slows down on long texts; a longer one is read this far.
MAX_FIND_CHARS = 20_000


def find_dates(text: str, *, tz: str, now: datetime) -> list[FoundDate]:
    """Every date or event mentioned in `text` (its first MAX_FIND_CHARS), in
    order, each titled by the sentence (or clause) around it without the date
    phrase; a sentence whose date is out of range is skipped."""
    zone = ZoneInfo(validate_time_zone(tz))
    now_local = _local_now(now, zone)
    found: list[FoundDate] = []
    for sentence in _SENTENCE_SPLIT_RE.split(text[:MAX_FIND_CHARS]):
        try:
            mentions = _mentions(sentence, zone, now_local)
            clauses = _clauses(sentence, mentions)
            found += [
                _found(sentence, mention, bounds, now_local)
                for mention, bounds in zip(mentions, clauses, strict=True)
            ]
        except (OverflowError, ValueError):  # a date out of range: not an event
            continue
    return found
