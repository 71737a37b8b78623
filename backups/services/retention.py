"""Which backups stay: a pure function of their timestamps (UTC).

Grandfather-father-son, counted over the backups that exist (as restic's
--keep-daily/weekly/monthly): walking from the newest, the first backup of
each day is kept until `daily` days have one, likewise for ISO weeks and
calendar months. A backup may be kept by several rules. Every backup younger
than `recent` is kept too, and the newest always is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any


def _day(t: datetime) -> Any:
    return t.date()


def _week(t: datetime) -> Any:
    return t.isocalendar()[:2]


def _month(t: datetime) -> Any:
    return (t.year, t.month)


def _newest_per_bucket(
    newest_first: list[datetime], bucket: Callable[[datetime], Any], count: int
) -> set[datetime]:
    kept: set[datetime] = set()
    seen: set[Any] = set()
    for t in newest_first:
        if len(seen) >= count:
            break
        b = bucket(t)
        if b not in seen:
            seen.add(b)
            kept.add(t)
    return kept


def keepers(
    timestamps: Iterable[datetime],
    *,
    daily: int,
    weekly: int,
    monthly: int,
    now: datetime,
    recent: timedelta = timedelta(0),
) -> set[datetime]:
    """The timestamps to keep; every other backup may be deleted."""
    newest_first = sorted(set(timestamps), reverse=True)
    if not newest_first:
        return set()
    kept = {newest_first[0]}
    kept |= {t for t in newest_first if now - t < recent}
    kept |= _newest_per_bucket(newest_first, _day, daily)
    kept |= _newest_per_bucket(newest_first, _week, weekly)
    kept |= _newest_per_bucket(newest_first, _month, monthly)
    return kept
