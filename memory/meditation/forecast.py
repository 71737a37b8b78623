"""What the next run would decide, computed and rolled back: a read."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction

from memory.meditation.runs import (
    decide,
    decision_counts,
    finish,
    run_params,
    user_run,
)
from memory.models import MeditationRun, ScoreRecord
from users.models import User


@dataclass(frozen=True)
class Forecast:
    """What a run would do: an unsaved run with its counts, and its decisions."""

    run: MeditationRun
    decisions: list[ScoreRecord]


def meditation_forecast(*, user: User, as_of: datetime | None = None) -> Forecast:
    """What a real run of the user at `as_of` (default now) would decide, and why.

    A read: it is decided by the very statements of a real run, in a transaction
    that is then rolled back, so no run, score record or audit event remains.
    Same data and same `as_of`, same decisions: the API hands `as_of` back so
    that the pages of one forecast agree.
    """
    run = user_run(user, dry_run=True, as_of=as_of)
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cur:
        # No user lock: a forecast reads committed state and is rolled back, so
        # it never waits for (or holds up) a run of the user in progress.
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
