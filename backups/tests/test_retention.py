"""Retention (7 daily, 4 weekly, 12 monthly by default): which backups stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from backups.services.retention import keepers

NOW = datetime(2026, 12, 2, 1, 30, tzinfo=UTC)
POLICY: dict[str, Any] = {"daily": 7, "weekly": 4, "monthly": 12}


def _nightly(days: int, *, at: datetime = NOW) -> list[datetime]:
    """One backup a night at 01:07 for `days` nights up to `at`."""
    last = at.replace(hour=1, minute=7, second=0)
    return [last - timedelta(days=n) for n in range(days)]


def test_nothing_to_keep_from_nothing():
    assert keepers([], now=NOW, **POLICY) == set()


def test_a_year_and_a_half_of_nightly_backups():
    stamps = _nightly(550)
    kept = keepers(stamps, now=NOW, **POLICY)
    days = sorted((t.date() for t in kept), reverse=True)
    # the last 7 nights
    assert days[:7] == [(NOW - timedelta(days=n)).date() for n in range(7)]
    # the newest of each of the last 4 ISO weeks: the Sundays before this week
    # (2026-11-30 is a Monday), plus this week's newest (today)
    sundays = {datetime(2026, 11, d, tzinfo=UTC).date() for d in (29, 22, 15)}
    assert sundays <= set(days)
    # the newest of each of the last 12 months: month ends, and today for December
    month_ends = {
        (datetime(y, m, 1, tzinfo=UTC) - timedelta(days=1)).date()
        for y, m in [(2026, m) for m in range(2, 13)]
    }
    assert month_ends <= set(days)
    assert min(days) == datetime(2026, 1, 31, tzinfo=UTC).date()
    # 7 nights; weeks add Nov 22 and 15 (Dec 2 and Nov 29 are nights already);
    # months add Oct 31 back to Jan 31 (Dec 2 and Nov 30 are nights already)
    assert len(kept) == len(set(days)) == 7 + 2 + 10


def test_several_backups_a_day_keep_the_newest_of_each_day():
    stamps = [
        NOW - timedelta(days=d, hours=h) for d in range(3, 20) for h in (2, 8, 14)
    ]
    kept = keepers(stamps, now=NOW, daily=7, weekly=0, monthly=0)
    assert len(kept) == 7
    for t in kept:
        same_day = [s for s in stamps if s.date() == t.date()]
        assert t == max(same_day)


def test_recent_backups_all_stay():
    stamps = [NOW - timedelta(hours=h) for h in (1, 3, 5, 30, 50)]
    kept = keepers(
        stamps, now=NOW, daily=1, weekly=0, monthly=0, recent=timedelta(hours=24)
    )
    assert kept == set(stamps[:3])


def test_the_newest_stays_even_with_nothing_to_keep():
    stamps = _nightly(10)
    assert keepers(stamps, now=NOW, daily=0, weekly=0, monthly=0) == {max(stamps)}


def test_gaps_count_existing_backups_not_calendar_days():
    # backups only every third day: 7 daily keepers reach back 19 days
    stamps = [NOW - timedelta(days=3 * n) for n in range(20)]
    kept = keepers(stamps, now=NOW, daily=7, weekly=0, monthly=0)
    assert sorted(kept, reverse=True) == stamps[:7]


def test_weekly_uses_iso_weeks_across_a_year_end():
    # 2026-12-28 (Mon) .. 2027-01-03 (Sun) is ISO week 2026-W53
    stamps = [datetime(2026, 12, 27, tzinfo=UTC) + timedelta(days=d) for d in range(9)]
    kept = keepers(stamps, now=stamps[-1], daily=0, weekly=3, monthly=0)
    assert kept == {
        datetime(2027, 1, 4, tzinfo=UTC),  # W01 of 2027
        datetime(2027, 1, 3, tzinfo=UTC),  # the newest of W53
        datetime(2026, 12, 27, tzinfo=UTC),  # W52
    }


def test_monthly_alone_keeps_month_ends_for_a_year():
    stamps = _nightly(800)
    kept = keepers(stamps, now=NOW, daily=0, weekly=0, monthly=12)
    assert len(kept) == 12
    assert {(t.year, t.month) for t in kept} == {(2026, m) for m in range(1, 13)}
    assert all(
        t == max(s for s in stamps if (s.year, s.month) == (t.year, t.month))
        for t in kept
    )


def test_duplicates_and_order_do_not_matter():
    stamps = _nightly(40)
    shuffled = stamps[::-1] + stamps[:5]
    assert keepers(shuffled, now=NOW, **POLICY) == keepers(stamps, now=NOW, **POLICY)


def test_beat_runs_a_nightly_backup_and_a_weekly_verify():
    from django.conf import settings

    schedule: dict[str, Any] = {
        str(e["task"]): e["schedule"] for e in settings.CELERY_BEAT_SCHEDULE.values()
    }
    nightly = schedule["backups.tasks.create_backup"]
    weekly = schedule["backups.tasks.verify_backup"]
    assert nightly.day_of_week == set(range(7)) and len(nightly.hour) == 1
    assert len(weekly.day_of_week) == 1 and len(weekly.hour) == 1
