"""What the next run would decide, computed and rolled back: a read."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.core.cache import cache
from django.db import connection, transaction
from redis.exceptions import RedisError

from memory.meditation.runs import (
    decide,
    decision_counts,
    finish,
    run_params,
    user_run,
)
from memory.models import MeditationRun, ScoreRecord
from users.models import User

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Forecast:
    """What a run would do: an unsaved run with its counts, and its decisions."""

    run: MeditationRun
    decisions: list[ScoreRecord]


FORECAST_CACHE_SECONDS = 600
FORECAST_CACHE_MAX_DECISIONS = 5000  # larger forecasts are recomputed per page


def meditation_forecast(*, user: User, as_of: datetime | None = None) -> Forecast:
    """What a real run of the user at `as_of` (default now) would decide, and why.

    A read: it is decided by the very statements of a real run, in a transaction
    that is then rolled back, so no run, score record or audit event remains.
    The API hands `as_of` back; asked again with it (the next page), the same
    forecast is served from the cache for FORECAST_CACHE_SECONDS, so its pages
    agree even if the user's memories (scores, accesses) moved in between.
    """
    if as_of is not None and (cached := _cached(user, as_of)) is not None:
        return cached
    forecast = _compute(user, as_of)
    if len(forecast.decisions) <= FORECAST_CACHE_MAX_DECISIONS:
        # ids only: the cached run must not carry the User (email, password hash)
        forecast.run._state.fields_cache.pop("user", None)
        try:
            cache.set(_key(user, forecast.run.as_of), forecast, FORECAST_CACHE_SECONDS)
        except RedisError:
            logger.warning("forecast not cached: Redis unavailable")
    return forecast


def _key(user: User, as_of: datetime) -> str:
    return f"kb:forecast:{user.pk}:{as_of.astimezone(UTC).isoformat()}"


def _cached(user: User, as_of: datetime) -> Forecast | None:
    try:
        found = cache.get(_key(user, as_of))
    except Exception:  # noqa: BLE001 - Redis down, or a pickle of older code
        return None
    return found if isinstance(found, Forecast) else None


def _compute(user: User, as_of: datetime | None) -> Forecast:
    run = user_run(user, dry_run=True, as_of=as_of)
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cur:
        # No user lock: a forecast reads committed state and is rolled back, so
        # it never waits for (or holds up) a run of the user in progress.
        # The score records a forecast writes are always rolled back, so the
        # table's statistics may say it is empty while this transaction holds
        # thousands: a nested-loop plan over them then took minutes (bench:
        # 10,000 memories, the 10th forecast in a row). Set-based statements
        # over the run's records are hash joins anyway.
        cur.execute("SET LOCAL enable_nestloop = off")
        run.save()
        params = run_params([run])
        processed = decide(cur, params)
        finish(cur, [run], processed, decision_counts(cur, params), started)
        decisions = list(
            run.scores.exclude(decision=ScoreRecord.Decision.KEEP).order_by(
                "decision", "score", "item_id"
            )
        )
        transaction.set_rollback(True)
    run.pk = None
    return Forecast(run=run, decisions=decisions)
