"""Meditation, scoring part (version "v1"): every active memory of a user gets

    score = clamp(w1·relevance_to_goals + w2·emotional_weight
                  + w3·predictive_value + w4·recency_freq)

computed set-wise in one SQL statement (no per-item ORM save), with each item's
signals kept in a ScoreRecord of the run. Same inputs and same `as_of`, same
scores. Then retention, decided on those records and applied set-wise:
short-term items past their lifetime are promoted (score >= threshold, or saved)
or expire; a tier over its soft quota archives its lowest (score, created_at)
items, never protected ones; archives past the grace window are purged; a
per-run cap defers the rest. A dry run decides the same and applies nothing.

Signals, each in [0, 1]:
- relevance_to_goals: best cosine similarity of the item to the user's goals,
  or 0.8 when it shares a tag with one; 0.5 when the user has no goals.
- emotional_weight: explicit feedback (thumbs_up 0.8, thumbs_down 0.2,
  rating:N → N/5) blended 70/30 with the content's sentiment strength (VADER,
  stored at write); 0.5 when there is neither.
- predictive_value: 1 - exp(-retrievals/5) from the read provenance of the last
  RETRIEVAL_RECORDS_DAYS, +0.2 when the user rated the item useful.
- recency_freq: 0.7·exp(-days since last seen/30) + 0.3·(1 - exp(-accesses/10)).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from audit.services import EventSpec, audit_record_chains
from kimberly.api.errors import invalid_field
from kimberly.context import Actor, Context
from memory import metrics, short_term
from memory.constants import Tier
from memory.models import MeditationRun, ScoreRecord
from users.models import User

SCORING_VERSION = "v1"
SIGNALS = ("relevance_to_goals", "emotional_weight", "predictive_value", "recency_freq")
DEFAULT_WEIGHTS = dict(zip(SIGNALS, (0.40, 0.30, 0.20, 0.10), strict=True))

logger = logging.getLogger(__name__)

_analyzer: Any = None
_analyzer_lock = threading.Lock()


def sentiment_strength(text: str) -> float:
    """|VADER compound| of the text (first 2,000 characters), in [0, 1]."""
    global _analyzer
    if _analyzer is None:
        with _analyzer_lock:
            if _analyzer is None:
                from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

                _analyzer = SentimentIntensityAnalyzer()
    return round(abs(float(_analyzer.polarity_scores(text[:2000])["compound"])), 4)


def normalize_weights(raw: Any) -> dict[str, float]:
    """All four weights, each a number in [0, 1], not all zero; scaled to sum 1."""
    if not isinstance(raw, dict) or set(raw) != set(SIGNALS):
        raise invalid_field(
            "meditation_weights", f"must have exactly: {', '.join(SIGNALS)}"
        )
    for name, value in raw.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 <= value <= 1
        ):
            raise invalid_field(
                f"meditation_weights.{name}", "must be a number from 0 to 1"
            )
    total = float(sum(raw.values()))
    if total <= 0:
        raise invalid_field("meditation_weights", "must not all be zero")
    return {name: round(float(raw[name]) / total, 6) for name in SIGNALS}


def weights_for(user: User) -> dict[str, float]:
    return dict(user.meditation_weights or DEFAULT_WEIGHTS)


# Every statement works on a batch of runs (one per user): the arrays %(users)s,
# %(runs)s, %(as_of)s and %(w1..4)s are aligned, one element per run. A batch
# of one is a single user's run; the nightly workers pass MEDITATION_BATCH_USERS.
_BATCH = """unnest(%(users)s::uuid[], %(runs)s::bigint[], %(as_of)s::timestamptz[],
                   %(w1)s::float8[], %(w2)s::float8[], %(w3)s::float8[], %(w4)s::float8[])
            AS b(user_id, run_id, as_of, w1, w2, w3, w4)"""

_SIGNALS_SQL = f"""
WITH batch AS (SELECT * FROM {_BATCH}
), user_goals AS (
    SELECT g.user_id, array_remove(array_agg(DISTINCT t), NULL)::varchar(64)[] AS tags
      FROM memory_goal g JOIN batch b ON b.user_id = g.user_id
      LEFT JOIN LATERAL unnest(g.tags) AS t ON true
     GROUP BY g.user_id
), retrieved AS (
    -- only the retrievals of the last RETRIEVAL_RECORDS_DAYS before as_of
    SELECT r.item_id, count(*) AS n
      FROM memory_retrievalrecord r JOIN batch b ON b.user_id = r.user_id
     WHERE r.created_at > b.as_of - make_interval(days => %(retrieval_days)s)
       AND r.created_at <= b.as_of
     GROUP BY r.item_id
), base AS (
    SELECT b.run_id, b.as_of, b.w1, b.w2, b.w3, b.w4, i.id, i.user_id, i.tier,
           i.size_bytes, i.score AS previous, i.sentiment, i.tags, i.access_count,
           COALESCE(i.last_seen_at, i.created_at) AS seen,
           ug.tags AS goal_tags, ug.user_id IS NOT NULL AS has_goals,
           CASE i.user_feedback
               WHEN 'thumbs_up' THEN 0.8 WHEN 'thumbs_down' THEN 0.2 WHEN '' THEN NULL
               ELSE substr(i.user_feedback, 8)::float / 5 END AS fb,
           COALESCE(r.n, 0) AS retrievals
      FROM batch b
      JOIN memory_memoryitem i ON i.user_id = b.user_id AND i.status = 'active'
      LEFT JOIN retrieved r ON r.item_id = i.id
      LEFT JOIN user_goals ug ON ug.user_id = b.user_id
), signals AS (
    SELECT run_id, id, tier, size_bytes, previous, w1, w2, w3, w4,
           CASE WHEN NOT has_goals THEN 0.5
                ELSE GREATEST(COALESCE(gs.sim, 0),
                              CASE WHEN x.tags && x.goal_tags THEN 0.8 ELSE 0 END)
           END AS rel,
           CASE WHEN fb IS NULL AND sentiment < 0.05 THEN 0.5
                ELSE 0.7 * COALESCE(fb, 0.5) + 0.3 * sentiment END AS emo,
           LEAST(1.0, 1 - exp(-retrievals / 5.0)
                      + CASE WHEN fb >= 0.6 THEN 0.2 ELSE 0 END) AS pred,
           0.7 * exp(-GREATEST(0, extract(epoch FROM as_of - seen)) / 86400 / 30)
             + 0.3 * (1 - exp(-access_count / 10.0)) AS rec
      FROM base x
      -- the item's vector is read only when its user has goals
      LEFT JOIN LATERAL (
          SELECT max(1 - (e.vector <=> g.vector)) AS sim
            FROM memory_memoryembedding e
            JOIN memory_goal g ON g.user_id = x.user_id AND g.vector IS NOT NULL
           WHERE x.has_goals AND e.item_id = x.id
      ) gs ON true
), scored AS (
    SELECT run_id, id, tier, size_bytes, previous, w1, w2, w3, w4,
           round(LEAST(1, GREATEST(0, rel::float))::numeric, 6)::float AS rel,
           round(LEAST(1, GREATEST(0, emo::float))::numeric, 6)::float AS emo,
           round(LEAST(1, GREATEST(0, pred::float))::numeric, 6)::float AS pred,
           round(LEAST(1, GREATEST(0, rec::float))::numeric, 6)::float AS rec
      FROM signals
), recorded AS (
    INSERT INTO memory_scorerecord (run_id, item_id, tier, size_bytes, relevance_to_goals,
                                    emotional_weight, predictive_value, recency_freq, score,
                                    previous_score, decision, reason)
    SELECT run_id, id, tier, size_bytes, rel, emo, pred, rec,
           round(LEAST(1, GREATEST(0, w1 * rel + w2 * emo + w3 * pred + w4 * rec))::numeric,
                 6)::float,
           previous, 'keep', ''
      FROM scored
    RETURNING run_id
)
SELECT run_id, count(*) FROM recorded GROUP BY run_id
"""

# Retention, decided on the runs' ScoreRecords (so a dry run decides exactly what
# a real run would), then applied set-wise. "%%" is a literal % for format().
_ROTATE_SQL = f"""
UPDATE memory_scorerecord sr SET
  decision = CASE WHEN i.protected OR i.user_feedback = 'thumbs_up'
                       OR sr.score >= %(threshold)s THEN 'promote' ELSE 'expire' END,
  reason = CASE
    WHEN i.protected THEN 'short-term past its lifetime; protected (saved): promoted'
    WHEN i.user_feedback = 'thumbs_up'
      THEN 'short-term past its lifetime; rated thumbs_up: promoted'
    WHEN sr.score >= %(threshold)s
      THEN format('short-term past its lifetime; score %%s >= %%s: promoted',
                  round(sr.score::numeric, 3), %(threshold)s)
    ELSE format('short-term past its lifetime; score %%s < %%s: expired',
                round(sr.score::numeric, 3), %(threshold)s) END
  FROM memory_memoryitem i, {_BATCH}
 WHERE sr.run_id = b.run_id AND i.id = sr.item_id AND sr.tier = 'short-term'
   AND i.created_at < b.as_of - make_interval(hours => %(lifetime)s)
"""

_ARCHIVE_SQL = f"""
WITH limits AS (
    SELECT b.run_id, t.tier, COALESCE(q.limit_bytes, t.dflt) AS lim
      FROM {_BATCH}
     CROSS JOIN (VALUES ('short-term', %(d_st)s::bigint), ('long-term', %(d_lt)s::bigint),
                        ('permanent', %(d_pm)s::bigint)) AS t(tier, dflt)
      LEFT JOIN memory_quota q ON q.user_id = b.user_id AND q.tier = t.tier
), live AS (
    SELECT sr.id, sr.run_id, sr.decision, sr.size_bytes, sr.score, i.created_at, i.protected,
           CASE WHEN sr.decision = 'promote' THEN 'long-term' ELSE sr.tier END AS ptier
      FROM memory_scorerecord sr JOIN memory_memoryitem i ON i.id = sr.item_id
     WHERE sr.run_id = ANY(%(runs)s) AND sr.decision IN ('keep', 'promote')
), excess AS (
    SELECT l.run_id, l.ptier, sum(l.size_bytes) - min(lim.lim) AS over
      FROM live l JOIN limits lim ON lim.run_id = l.run_id AND lim.tier = l.ptier
     GROUP BY l.run_id, l.ptier
), ranked AS (
    -- lowest (score, created_at) first; never protected or just-promoted items
    SELECT l.id, l.ptier, e.over,
           sum(l.size_bytes) OVER (PARTITION BY l.run_id, l.ptier
                                   ORDER BY l.score, l.created_at, l.id) - l.size_bytes AS before
      FROM live l JOIN excess e ON e.run_id = l.run_id AND e.ptier = l.ptier
     WHERE e.over > 0 AND NOT l.protected AND l.decision = 'keep'
)
UPDATE memory_scorerecord sr SET decision = 'archive',
       reason = format('%%s is %%s bytes over its quota; archived lowest score first (%%s)',
                       r.ptier, r.over, round(sr.score::numeric, 3))
  FROM ranked r WHERE sr.id = r.id AND r.before < r.over
"""

_PURGE_SQL = f"""
INSERT INTO memory_scorerecord (run_id, item_id, tier, size_bytes, score, previous_score,
                                decision, reason)
SELECT b.run_id, i.id, i.tier, i.size_bytes, i.score, i.score, 'purge',
       format('archived on %%s, past the %%s-day grace window',
              to_char(i.archived_at, 'YYYY-MM-DD'), %(grace)s)
  FROM {_BATCH} JOIN memory_memoryitem i ON i.user_id = b.user_id
 WHERE i.status = 'archived' AND NOT i.protected
   AND i.archived_at < b.as_of - make_interval(days => %(grace)s)
"""

_CAP_SQL = """
WITH ranked AS (
    SELECT id, row_number() OVER (
               PARTITION BY run_id
               ORDER BY CASE decision WHEN 'expire' THEN 1 WHEN 'promote' THEN 2
                                      WHEN 'archive' THEN 3 ELSE 4 END, score, item_id) AS n
      FROM memory_scorerecord WHERE run_id = ANY(%(runs)s) AND decision <> 'keep'
)
UPDATE memory_scorerecord sr
   SET decision = 'keep', reason = format('deferred to the next run (cap of %%s changes)', %(cap)s)
  FROM ranked r WHERE sr.id = r.id AND r.n > %(cap)s
"""

_COUNTS_SQL = """
SELECT run_id, decision, count(*), count(*) FILTER (WHERE reason LIKE 'deferred%%')
  FROM memory_scorerecord
 WHERE run_id = ANY(%(runs)s) AND (decision <> 'keep' OR reason LIKE 'deferred%%')
 GROUP BY run_id, decision
"""

# Decisions are made in several statements, each on a fresh snapshot, with no
# row locks (a user may edit while a run decides). So a real run first notes
# each item's version; a user's change after that bumps it. Once the apply step
# holds the row locks, a decision whose item is gone or changed is withdrawn
# (kept, saying why) and only the rest is applied and counted.
_SEEN_SQL = """
CREATE TEMP TABLE meditation_seen ON COMMIT DROP AS
SELECT id AS item_id, version FROM memory_memoryitem WHERE user_id = ANY(%(users)s)
"""

_RECHECK_SQL = """
UPDATE memory_scorerecord sr
   SET decision = 'keep',
       reason = format('changed during the run: %%s not applied', sr.decision)
 WHERE sr.run_id = ANY(%(runs)s) AND sr.decision <> 'keep'
   AND NOT EXISTS (SELECT 1 FROM memory_memoryitem m
                     JOIN meditation_seen s ON s.item_id = m.id AND s.version = m.version
                    WHERE m.id = sr.item_id)
"""

_APPLY_SQL = [
    # Scores that moved. Rewriting a memory row also recomputes its tsvector and
    # touches its indexes; recency drifts every item a little every night, so
    # moves below MEDITATION_SCORE_EPSILON are left (decisions use the exact
    # scores in the run's records). bench/reports/meditation_scale.md.
    # Only items unchanged since the run read them (meditation_seen).
    """UPDATE memory_memoryitem m SET score = sr.score
         FROM memory_scorerecord sr, meditation_seen s
        WHERE sr.run_id = ANY(%(runs)s) AND m.id = sr.item_id AND sr.decision <> 'purge'
          AND s.item_id = m.id AND s.version = m.version
          AND abs(m.score - sr.score) >= %(epsilon)s""",
    # history: the state each changed item had before this run
    """INSERT INTO memory_memoryversion (item_id, version, action, actor_type, actor_id,
                                         changed_at, tier, status, protected, content, metadata)
       SELECT m.id, m.version, 'meditation.' || sr.decision, 'system', 'meditation', now(),
              m.tier, m.status, m.protected, m.content,
              jsonb_build_object('tags', m.tags, 'source', m.source, 'channels', m.channels,
                                 'sensitive', m.sensitive, 'scope', m.scope,
                                 'user_feedback', NULLIF(m.user_feedback, ''),
                                 'version', m.version)
         FROM memory_memoryitem m JOIN memory_scorerecord sr ON sr.item_id = m.id
        WHERE sr.run_id = ANY(%(runs)s) AND sr.decision IN ('promote', 'expire', 'archive')""",
    """UPDATE memory_memoryitem m SET tier = 'long-term', version = m.version + 1,
              updated_at = now()
         FROM memory_scorerecord sr
        WHERE sr.run_id = ANY(%(runs)s) AND m.id = sr.item_id AND sr.decision = 'promote'""",
    """UPDATE memory_memoryitem m SET status = 'archived', archived_at = now(),
              version = m.version + 1, updated_at = now()
         FROM memory_scorerecord sr
        WHERE sr.run_id = ANY(%(runs)s) AND m.id = sr.item_id
          AND sr.decision IN ('expire', 'archive') AND NOT m.protected""",
    # Django's CASCADE lives in Python, not in the schema: remove what refers to
    # a purged item first (its history and vector; provenance keeps bare ids).
    """DELETE FROM memory_memoryversion v USING memory_scorerecord sr
        WHERE sr.run_id = ANY(%(runs)s) AND v.item_id = sr.item_id AND sr.decision = 'purge'""",
    """DELETE FROM memory_memoryembedding e USING memory_scorerecord sr
        WHERE sr.run_id = ANY(%(runs)s) AND e.item_id = sr.item_id AND sr.decision = 'purge'""",
    """DELETE FROM memory_memoryitem m USING memory_scorerecord sr
        WHERE sr.run_id = ANY(%(runs)s) AND m.id = sr.item_id AND sr.decision = 'purge'
          AND m.user_id = ANY(%(users)s) AND m.status = 'archived'""",
    # usage from the items themselves: exact, since the quota rows are locked
    """UPDATE memory_quota q SET used_bytes = COALESCE(
              (SELECT sum(size_bytes) FROM memory_memoryitem
                WHERE user_id = q.user_id AND tier = q.tier AND status = 'active'), 0)
        WHERE q.user_id = ANY(%(users)s)""",
]


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
        run = _user_run(user, dry_run=dry_run, as_of=as_of)
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
        _attempt(ctx=ctx, runs=runs)
    except SoftTimeLimitExceeded:
        raise
    except Exception as exc:
        _mark_failed([r.pk for r in runs], exc)
        raise


def _attempt(*, ctx: Context, runs: list[MeditationRun]) -> None:
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
        _lock_users(cur, [r.user_id for r in runs])
        runs = _still_queued(cur, runs)
        if not runs:
            return
        params = _params(runs)
        if not dry_run:
            # (an earlier run in this same outer transaction left its copy)
            cur.execute("DROP TABLE IF EXISTS pg_temp.meditation_seen")
            cur.execute(_SEEN_SQL, params)
        processed = _decide(cur, params)
        if not dry_run:
            _apply(cur, params)
        _finish(cur, runs, processed, _counts(cur, params), started)
        _audit_runs(ctx, runs)
        if not dry_run:
            users = [r.user_id for r in runs]
            transaction.on_commit(partial(_invalidate_short_term, users), robust=True)
    _observe_done(runs)


def _lock_users(cur: Any, users: list[Any]) -> None:
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


def _params(runs: list[MeditationRun]) -> dict[str, Any]:
    defaults = settings.MEMORY_QUOTA_DEFAULTS
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
        "d_st": defaults["short-term"],
        "d_lt": defaults["long-term"],
        "d_pm": defaults["permanent"],
    }


def _decide(cur: Any, params: dict[str, Any]) -> dict[int, int]:
    """Score and decide into the runs' ScoreRecords; items scored per run."""
    cur.execute(
        "DELETE FROM memory_scorerecord WHERE run_id = ANY(%(runs)s)", params
    )  # a re-delivered run starts clean
    cur.execute(_SIGNALS_SQL, params)
    processed = dict(cur.fetchall())
    for sql in (_ROTATE_SQL, _ARCHIVE_SQL, _PURGE_SQL, _CAP_SQL):
        cur.execute(sql, params)
    return processed


def _apply(cur: Any, params: dict[str, Any]) -> None:
    """Lock, withdraw decisions on items changed since they were read, apply."""
    _lock_for_apply(cur, params)
    cur.execute(_RECHECK_SQL, params)
    for sql in _APPLY_SQL:
        cur.execute(sql, params)


def _counts(cur: Any, params: dict[str, Any]) -> dict[int, dict[str, int]]:
    cur.execute(_COUNTS_SQL, params)
    counts: dict[int, dict[str, int]] = {run_id: {} for run_id in params["runs"]}
    for run_id, decision, n, deferred in cur.fetchall():
        counts[run_id][decision] = n
        counts[run_id]["deferred"] = counts[run_id].get("deferred", 0) + deferred
    return counts


_COUNTED = ("processed", "promoted", "expired", "archived", "purged", "deferred")


def _finish(
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
    run = _user_run(user, dry_run=True, as_of=as_of)
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cur:
        _lock_users(cur, [user.pk])  # after a run of the user in progress
        run.save()
        params = _params([run])
        processed = _decide(cur, params)
        _finish(cur, [run], processed, _counts(cur, params), started)
        decisions = list(
            run.scores.exclude(decision=ScoreRecord.Decision.KEEP).order_by(
                "decision", "score", "item_id"
            )
        )
        transaction.set_rollback(True)
    run.pk = None
    return Forecast(run=run, decisions=decisions)


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
        {"users": params["users"], "tiers": list(Tier.values)},
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


def meditation_queue(*, user: User, dry_run: bool = False) -> MeditationRun:
    """The user's queued run, handed to a worker after commit (POST /meditate).

    A run of the user still queued (same dry_run, not part of a night) is
    returned and sent again rather than a second one created: a client that
    retries never gets two runs, and a run done meanwhile is skipped by the
    task. With the broker down the run is still accepted: it stays queued and
    meditation_requeue_stale sends it later, so nothing acknowledged is lost.
    """
    with transaction.atomic():
        with connection.cursor() as cur:  # two requests at once: one run
            cur.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                [f"meditate-queue:{user.pk}"],
            )
        run = (
            MeditationRun.objects.filter(
                user=user,
                scope=MeditationRun.Scope.USER,
                parent=None,
                dry_run=dry_run,
                status=MeditationRun.State.QUEUED,
            )
            .order_by("pk")
            .first()
        )
        if run is None:
            run = _user_run(user, dry_run=dry_run)
            run.save()
        transaction.on_commit(partial(_send_user_run, run.pk))
    return run


def _send_user_run(run_id: int) -> None:
    from memory.tasks import meditate_user

    try:
        meditate_user.delay(run_id)
    except KombuOperationalError:
        # After commit: the run is accepted and must stay so.
        logger.warning("broker unavailable; run %s waits for the requeue", run_id)


def meditation_prune_records() -> int:
    """Drop score records of runs older than MEDITATION_RECORDS_DAYS."""
    cutoff = timezone.now() - timedelta(days=settings.MEDITATION_RECORDS_DAYS)
    with connection.cursor() as cur:
        cur.execute(
            """DELETE FROM memory_scorerecord sr USING memory_meditationrun r
                WHERE sr.run_id = r.id AND r.started_at < %s""",
            [cutoff],
        )
        return cur.rowcount


def meditation_queue_all(
    *, dry_run: bool = False, as_of: datetime | None = None
) -> MeditationRun:
    """The nightly run: a scope-all run, one queued child run per active user, and
    one `meditate_batch` task per MEDITATION_BATCH_USERS users, sent after commit
    so that the workers share them out. An empty night finishes at once."""
    from memory.tasks import meditate_batch

    with transaction.atomic():
        parent = _create_all_run(dry_run=dry_run, as_of=as_of)
        for ids in _child_batches(parent):
            # robust: one failed publish must not drop the batches after it (a
            # run left queued is re-sent by meditation_requeue_stale)
            transaction.on_commit(partial(meditate_batch.delay, ids), robust=True)
    meditation_all_refresh(parent.pk)
    return parent


def meditation_all_inline(*, ctx: Context, dry_run: bool = False) -> MeditationRun:
    """The same scope-all run, its batches done in this process (./cli meditate)."""
    parent = _create_all_run(dry_run=dry_run)
    for ids in _child_batches(parent):
        meditation_run_batch(ids, ctx=ctx)
    meditation_all_refresh(parent.pk)
    parent.refresh_from_db()
    return parent


def _create_all_run(*, dry_run: bool, as_of: datetime | None = None) -> MeditationRun:
    return MeditationRun.objects.create(
        scope=MeditationRun.Scope.ALL,
        user=None,
        dry_run=dry_run,
        scoring_version=SCORING_VERSION,
        weights=DEFAULT_WEIGHTS,
        as_of=as_of or timezone.now(),
    )


def _user_run(
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


def _child_batches(parent: MeditationRun) -> Iterator[list[int]]:
    """Create the scope-all run's child runs, one per active user, and yield
    their ids MEDITATION_BATCH_USERS at a time."""
    users = User.objects.filter(is_active=True).only("id", "meditation_weights")
    batch: list[MeditationRun] = []
    for user in users.order_by("pk").iterator(chunk_size=2000):
        batch.append(
            _user_run(user, dry_run=parent.dry_run, as_of=parent.as_of, parent=parent)
        )
        if len(batch) >= settings.MEDITATION_BATCH_USERS:
            yield [r.pk for r in MeditationRun.objects.bulk_create(batch)]
            batch = []
    if batch:
        yield [r.pk for r in MeditationRun.objects.bulk_create(batch)]


def meditation_run_batch(run_ids: list[int], *, ctx: Context | None = None) -> int:
    """Run the queued user runs among `run_ids` (a worker's share of the night).

    Set-wise, in one transaction; if that fails, each run is retried alone so
    that one user's failure (recorded on their run) does not fail the others.
    Finished runs are skipped, so a re-delivered batch does only what is left.
    A soft time limit stops the batch at once: what is not done stays queued.
    """
    ctx = ctx or Context(Actor.system("meditation"))
    runs = list(
        MeditationRun.objects.filter(pk__in=run_ids, status=MeditationRun.State.QUEUED)
    )
    for group in _groups(runs):
        try:
            _attempt(ctx=ctx, runs=group)
        except SoftTimeLimitExceeded:
            raise
        except Exception:
            logger.exception("meditation batch failed; running its users one by one")
            for run in group:
                try:
                    meditation_run_many(ctx=ctx, runs=[run])
                except SoftTimeLimitExceeded:
                    raise
                except Exception:  # recorded on the run by meditation_run_many
                    logger.exception("meditation run %s failed", run.pk)
    done = MeditationRun.objects.filter(
        pk__in=[r.pk for r in runs], status=MeditationRun.State.DONE
    )
    for parent_id in {r.parent_id for r in runs} - {None}:
        meditation_all_refresh(parent_id)  # type: ignore[arg-type]
    return sum(done.values_list("processed", flat=True))


def _groups(runs: list[MeditationRun]) -> list[list[MeditationRun]]:
    """A batch is all dry or all real runs, one run per user."""
    groups: list[list[MeditationRun]] = []
    for run in sorted(runs, key=lambda r: r.pk):
        for group in groups:
            if group[0].dry_run == run.dry_run and all(
                r.user_id != run.user_id for r in group
            ):
                group.append(run)
                break
        else:
            groups.append([run])
    return groups


def meditation_requeue_stale() -> int:
    """Send again the user runs still queued MEDITATION_STALE_MINUTES after they
    were created, and refresh stale scope-all runs. Repeating it is harmless:
    a run is re-checked under its user's lock and a finished one is skipped."""
    from memory.tasks import meditate_batch

    cutoff = timezone.now() - timedelta(minutes=settings.MEDITATION_STALE_MINUTES)
    queued = MeditationRun.objects.filter(
        status=MeditationRun.State.QUEUED, started_at__lt=cutoff
    )
    stale = list(
        queued.filter(scope=MeditationRun.Scope.USER)
        .order_by("pk")
        .values_list("pk", flat=True)[:20_000]
    )
    size = settings.MEDITATION_BATCH_USERS
    for i in range(0, len(stale), size):
        meditate_batch.delay(stale[i : i + size])
    for parent_id in queued.filter(scope=MeditationRun.Scope.ALL).values_list(
        "pk", flat=True
    ):
        meditation_all_refresh(parent_id)
    return len(stale)


_ALL_REFRESH_SQL = """
UPDATE memory_meditationrun p SET
  processed = s.processed, promoted = s.promoted, expired = s.expired,
  archived = s.archived, purged = s.purged, deferred = s.deferred,
  status = CASE WHEN s.queued > 0 THEN 'queued' WHEN s.failed > 0 THEN 'failed'
                ELSE 'done' END,
  error = CASE WHEN s.failed > 0
               THEN format('%%s of %%s user runs failed', s.failed, s.n) ELSE '' END,
  finished_at = CASE WHEN s.queued > 0 THEN NULL ELSE COALESCE(s.last, now()) END,
  duration_ms = CASE WHEN s.queued > 0 THEN NULL
                     ELSE GREATEST(0, extract(epoch FROM COALESCE(s.last, now())
                                                  - p.started_at) * 1000)::int END
  FROM (SELECT count(*) AS n,
               COALESCE(sum(processed), 0) AS processed, COALESCE(sum(promoted), 0) AS promoted,
               COALESCE(sum(expired), 0) AS expired, COALESCE(sum(archived), 0) AS archived,
               COALESCE(sum(purged), 0) AS purged, COALESCE(sum(deferred), 0) AS deferred,
               count(*) FILTER (WHERE status = 'queued') AS queued,
               count(*) FILTER (WHERE status = 'failed') AS failed,
               max(finished_at) AS last
          FROM memory_meditationrun WHERE parent_id = %(parent)s) s
 WHERE p.id = %(parent)s
"""


def meditation_all_refresh(parent_id: int) -> None:
    """Recompute a scope-all run from its children (exact, so safe to repeat).

    The parent row is locked first, in its own statement: the aggregate then
    reads a snapshot taken after any concurrent refresh has committed, so a
    late refresh can never write older totals over newer ones. The refresh
    that finishes the night observes its duration, once.
    """
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "SELECT status FROM memory_meditationrun WHERE id = %s FOR UPDATE",
            [parent_id],
        )
        before = cur.fetchone()
        cur.execute(
            _ALL_REFRESH_SQL + " RETURNING p.status, p.duration_ms",
            {"parent": parent_id},
        )
        after = cur.fetchone()
    if before and after and before[0] == "queued" and after[0] != "queued":
        metrics.meditation_all_seconds.observe((after[1] or 0) / 1000)
