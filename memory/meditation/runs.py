"""A batch of user runs: lock, decide, apply, record, in one transaction."""

from __future__ import annotations

import time
from datetime import datetime
from functools import partial
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit.services import EventSpec, audit_record_chains
from kimberly.context import Context
from memory import metrics, short_term
from memory.constants import Tier
from memory.meditation.retention import (
    APPLY_SQL,
    ARCHIVE_RECHECK_SQL,
    ARCHIVE_SQL,
    CAP_SQL,
    COUNTS_SQL,
    PURGE_SQL,
    RECHECK_SQL,
    ROTATE_SQL,
    SEEN_SQL,
)
from memory.meditation.scoring import SCORING_VERSION, SIGNALS_SQL, weights_for
from memory.models import MeditationRun, ScoreRecord
from memory.quotas import limit_params
from users.models import User


def meditation_run(
    *,
    ctx: Context,
    user: User,
    dry_run: bool = False,
    as_of: datetime | None = None,
    run: MeditationRun | None = None,
) -> MeditationRun:
    """Score one user's memories, decide retention, and (unless a dry run) apply it.

    A batch of one run: see meditation_run_many. Raises if the run fails (it is
    then marked failed).
    """
    if run is None:
        run = user_run(user, dry_run=dry_run, as_of=as_of)
        run.save()
    meditation_run_many(ctx=ctx, runs=[run])
    run.refresh_from_db()
    return run


def meditation_run_many(*, ctx: Context, runs: list[MeditationRun]) -> None:
    """Score, decide and (unless dry runs) apply queued runs of distinct users.

    One transaction for the batch, under each user's advisory lock (taken in a
    fixed order): a second run for a user waits for the first, and a run found
    already finished once the locks are held is skipped. A worker killed mid-run
    rolls everything back, so the re-delivered task starts over and nothing is
    archived twice. On failure the runs still queued are marked failed (counted
    once each) and the error raised; a soft time limit is raised at once and
    leaves them queued, for the stale requeue to send again.
    """
    try:
        attempt(ctx=ctx, runs=runs)
    except SoftTimeLimitExceeded:
        raise
    except Exception as exc:
        _mark_failed([r.pk for r in runs], exc)
        raise


def attempt(*, ctx: Context, runs: list[MeditationRun]) -> None:
    """One try at meditation_run_many's runs: on error, nothing is changed."""
    if not runs:
        return
    dry = {r.dry_run for r in runs}
    assert len(dry) == 1, "a batch is all dry runs or all real runs"
    dry_run = dry.pop()
    runs = sorted(runs, key=lambda r: str(r.user_id))
    assert len({r.user_id for r in runs}) == len(runs), "one run per user"
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cur:
        lock_users(cur, [r.user_id for r in runs])
        runs = _still_queued(cur, runs)
        if not runs:
            return
        params = run_params(runs)
        if not dry_run:
            # (an earlier run in this same outer transaction left its copy)
            cur.execute("DROP TABLE IF EXISTS pg_temp.meditation_seen")
            cur.execute(SEEN_SQL, params)
        processed = decide(cur, params)
        if not dry_run:
            _apply(cur, params)
        finish(cur, runs, processed, decision_counts(cur, params), started)
        _audit_runs(ctx, runs)
        if not dry_run:
            users = [r.user_id for r in runs]
            transaction.on_commit(partial(_invalidate_short_term, users), robust=True)
    _observe_done(runs)


def lock_users(cur: Any, users: list[Any]) -> None:
    # One run per user at a time: a second one waits here for the first.
    cur.execute(
        """SELECT pg_advisory_xact_lock(hashtextextended('meditate:' || u::text, 0))
             FROM (SELECT u FROM unnest(%s::uuid[]) WITH ORDINALITY AS x(u, n)
                    ORDER BY n) s""",
        [users],
    )


def _still_queued(cur: Any, runs: list[MeditationRun]) -> list[MeditationRun]:
    cur.execute(
        """SELECT id FROM memory_meditationrun
            WHERE id = ANY(%s) AND status = 'queued' FOR UPDATE""",
        [[r.pk for r in runs]],
    )
    queued = {row[0] for row in cur.fetchall()}
    return [r for r in runs if r.pk in queued]


def run_params(runs: list[MeditationRun]) -> dict[str, Any]:
    return {
        "users": [r.user_id for r in runs],
        "runs": [r.pk for r in runs],
        "as_of": [r.as_of for r in runs],
        "w1": [r.weights["relevance_to_goals"] for r in runs],
        "w2": [r.weights["emotional_weight"] for r in runs],
        "w3": [r.weights["predictive_value"] for r in runs],
        "w4": [r.weights["recency_freq"] for r in runs],
        "threshold": settings.MEDITATION_PROMOTE_THRESHOLD,
        "lifetime": settings.MEDITATION_SHORT_TERM_HOURS,
        "grace": settings.MEDITATION_PURGE_GRACE_DAYS,
        "retrieval_days": settings.RETRIEVAL_RECORDS_DAYS,
        "cap": settings.MEDITATION_MAX_CHANGES,
        "epsilon": settings.MEDITATION_SCORE_EPSILON,
        "tiers": list(Tier.values),
        **limit_params(),
    }


def decide(cur: Any, params: dict[str, Any]) -> dict[int, int]:
    """Score and decide into the runs' ScoreRecords; items scored per run."""
    cur.execute(
        "DELETE FROM memory_scorerecord WHERE run_id = ANY(%(runs)s)", params
    )  # a re-delivered run starts clean
    cur.execute(SIGNALS_SQL, params)
    processed = dict(cur.fetchall())
    for sql in (ROTATE_SQL, ARCHIVE_SQL, PURGE_SQL, CAP_SQL):
        cur.execute(sql, params)
    return processed


def _apply(cur: Any, params: dict[str, Any]) -> None:
    """Lock, withdraw decisions on items changed since they were read, apply."""
    _lock_for_apply(cur, params)
    cur.execute(ARCHIVE_RECHECK_SQL, params)
    cur.execute(RECHECK_SQL, params)
    for sql in APPLY_SQL:
        cur.execute(sql, params)


def decision_counts(cur: Any, params: dict[str, Any]) -> dict[int, dict[str, int]]:
    cur.execute(COUNTS_SQL, params)
    counts: dict[int, dict[str, int]] = {run_id: {} for run_id in params["runs"]}
    for run_id, decision, n, deferred in cur.fetchall():
        counts[run_id][decision] = n
        counts[run_id]["deferred"] = counts[run_id].get("deferred", 0) + deferred
    return counts


_COUNTED = ("processed", "promoted", "expired", "archived", "purged", "deferred")


def finish(
    cur: Any,
    runs: list[MeditationRun],
    processed: dict[int, int],
    counts: dict[int, dict[str, int]],
    started: float,
) -> None:
    """Mark the runs done with their counts (set on the instances too)."""
    now = timezone.now()
    duration_ms = int((time.perf_counter() - started) * 1000)
    for run in runs:
        c = counts[run.pk]
        run.processed = processed.get(run.pk, 0)
        run.promoted = c.get("promote", 0)
        run.expired = c.get("expire", 0)
        run.archived = c.get("archive", 0)
        run.purged = c.get("purge", 0)
        run.deferred = c.get("deferred", 0)
        run.status = MeditationRun.State.DONE
        run.finished_at = now
        run.duration_ms = duration_ms
    cur.execute(
        """UPDATE memory_meditationrun r SET status = 'done', finished_at = %(now)s,
                  duration_ms = %(ms)s, processed = c.processed,
                  promoted = c.promoted, expired = c.expired,
                  archived = c.archived, purged = c.purged, deferred = c.deferred
             FROM unnest(%(ids)s::bigint[], %(processed)s::int[], %(promoted)s::int[],
                         %(expired)s::int[], %(archived)s::int[], %(purged)s::int[],
                         %(deferred)s::int[])
                  AS c(id, processed, promoted, expired, archived, purged, deferred)
            WHERE r.id = c.id""",
        {
            "ms": duration_ms,
            "now": now,
            "ids": [r.pk for r in runs],
            **{f: [getattr(r, f) for r in runs] for f in _COUNTED},
        },
    )


def _observe_done(runs: list[MeditationRun]) -> None:
    """Metrics of finished runs: each run's duration once, applied decisions."""
    for run in runs:
        metrics.meditation_seconds.observe((run.duration_ms or 0) / 1000)
    if runs[0].dry_run:
        return
    for decision, field in (
        ("promote", "promoted"),
        ("expire", "expired"),
        ("archive", "archived"),
        ("purge", "purged"),
    ):
        metrics.meditation_items.labels(decision=decision).inc(
            sum(getattr(r, field) for r in runs)
        )
    metrics.meditation_last_success.set_to_current_time()


def _mark_failed(run_ids: list[int], exc: BaseException) -> None:
    """Fail the runs still queued (finished ones stay done); count each once."""
    failed = MeditationRun.objects.filter(
        pk__in=run_ids, status=MeditationRun.State.QUEUED
    ).update(
        status=MeditationRun.State.FAILED,
        error=str(exc)[:2000],
        finished_at=timezone.now(),
    )
    metrics.meditation_failures.inc(failed)


def _lock_for_apply(cur: Any, params: dict[str, Any]) -> None:
    """Take the apply step's row locks in the order every writer takes them.

    Writers lock a memory row and then their quota rows, and multi-row writers
    lock memory rows in id order; so lock the rows this run will change in id
    order first, then the users' quota rows. Holding the quota rows until
    commit makes writers of these users wait, so the usage recomputed from the
    items stays exact.
    """
    cur.execute(
        """SELECT m.id FROM memory_memoryitem m
             JOIN memory_scorerecord sr ON sr.item_id = m.id
            WHERE sr.run_id = ANY(%(runs)s)
              AND (sr.decision <> 'keep' OR abs(m.score - sr.score) >= %(epsilon)s)
            ORDER BY m.id FOR UPDATE OF m""",
        params,
    )
    cur.execute(
        """INSERT INTO memory_quota (user_id, tier, used_bytes)
           SELECT u, t, 0 FROM unnest(%(users)s::uuid[]) u, unnest(%(tiers)s::text[]) t
           ON CONFLICT DO NOTHING""",
        params,
    )
    cur.execute(
        """SELECT id FROM memory_quota WHERE user_id = ANY(%(users)s)
            ORDER BY user_id, tier FOR UPDATE""",
        params,
    )


def _invalidate_short_term(users: list[Any]) -> None:
    for user_id in users:
        short_term.short_term_invalidate(user_id)


def _audit_runs(ctx: Context, runs: list[MeditationRun]) -> None:
    """Per user: every promotion, expiry, archive and purge with its reason (no
    content; a dry run has none), then the run itself."""
    events: dict[Any, list[EventSpec]] = {r.user_id: [] for r in runs}
    by_run = {r.pk: r for r in runs}
    if not runs[0].dry_run:
        decided = (
            ScoreRecord.objects.filter(run_id__in=by_run)
            .exclude(decision="keep")
            .order_by("run_id", "item_id")
            .values_list("run_id", "item_id", "decision", "reason", "tier")
        )
        for run_id, item_id, decision, reason, tier in decided:
            events[by_run[run_id].user_id].append(
                EventSpec(
                    action=f"memory.{decision}",
                    target_type="memory",
                    target_id=f"mem_{item_id}",
                    details={"reason": reason, "run": run_id, "tier": tier},
                )
            )
    for run in runs:
        events[run.user_id].append(
            EventSpec(
                action="meditation.run",
                target_type="meditation",
                target_id=str(run.pk),
                details={
                    "dry_run": run.dry_run,
                    "processed": run.processed,
                    "promoted": run.promoted,
                    "expired": run.expired,
                    "archived": run.archived,
                    "purged": run.purged,
                    "scoring_version": run.scoring_version,
                },
            )
        )
    audit_record_chains(ctx=ctx, events=events)


def user_run(
    user: User,
    *,
    dry_run: bool,
    as_of: datetime | None = None,
    parent: MeditationRun | None = None,
) -> MeditationRun:
    """An unsaved queued run of one user, with the user's weights."""
    return MeditationRun(
        scope=MeditationRun.Scope.USER,
        parent=parent,
        user=user,
        dry_run=dry_run,
        scoring_version=SCORING_VERSION,
        weights=weights_for(user),
        as_of=as_of or timezone.now(),
    )
