"""Meditation, scoring part (version "v1"): every active memory of a user gets

    score = clamp(w1·relevance_to_goals + w2·emotional_weight
                  + w3·predictive_value + w4·recency_freq)

computed set-wise in one SQL statement (no per-item ORM save), with each item's
signals kept in a ScoreRecord of the run. Same inputs and same `as_of`, same
scores. Retention (promote/expire/archive/purge) is not built yet.

Signals, each in [0, 1]:
- relevance_to_goals: best cosine similarity of the item to the user's goals,
  or 0.8 when it shares a tag with one; 0.5 when the user has no goals.
- emotional_weight: explicit feedback (thumbs_up 0.8, thumbs_down 0.2,
  rating:N → N/5) blended 70/30 with the content's sentiment strength (VADER,
  stored at write); 0.5 when there is neither.
- predictive_value: 1 - exp(-retrievals/5) from the read provenance, +0.2 when
  the user rated the item useful.
- recency_freq: 0.7·exp(-days since last seen/30) + 0.3·(1 - exp(-accesses/10)).
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from audit.services import audit_record
from kimberly.api.errors import invalid_field
from kimberly.context import Context
from memory.models import MeditationRun
from users.models import User

SCORING_VERSION = "v1"
SIGNALS = ("relevance_to_goals", "emotional_weight", "predictive_value", "recency_freq")
DEFAULT_WEIGHTS = dict(zip(SIGNALS, (0.40, 0.30, 0.20, 0.10), strict=True))

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


_SIGNALS_SQL = """
WITH goals AS (
    SELECT vector, tags FROM memory_goal WHERE user_id = %(user)s
), goal_tags AS (
    SELECT COALESCE(array_agg(DISTINCT t), '{}')::varchar(64)[] AS tags
      FROM goals, unnest(goals.tags) AS t
), retrieved AS (
    SELECT item_id, count(*) AS n
      FROM memory_retrievalrecord WHERE user_id = %(user)s GROUP BY item_id
), base AS (
    SELECT i.id, i.score AS previous, i.sentiment, i.tags, i.access_count,
           COALESCE(i.last_seen_at, i.created_at) AS seen, e.vector,
           CASE i.user_feedback
               WHEN 'thumbs_up' THEN 0.8 WHEN 'thumbs_down' THEN 0.2 WHEN '' THEN NULL
               ELSE substr(i.user_feedback, 8)::float / 5 END AS fb,
           COALESCE(r.n, 0) AS retrievals
      FROM memory_memoryitem i
      LEFT JOIN memory_memoryembedding e ON e.item_id = i.id
      LEFT JOIN retrieved r ON r.item_id = i.id
     WHERE i.user_id = %(user)s AND i.status = 'active'
), signals AS (
    SELECT id, previous,
           CASE WHEN NOT EXISTS (SELECT 1 FROM goals) THEN 0.5
                ELSE GREATEST(
                    COALESCE((SELECT max(1 - (b.vector <=> g.vector)) FROM goals g
                               WHERE g.vector IS NOT NULL AND b.vector IS NOT NULL), 0),
                    CASE WHEN b.tags && (SELECT tags FROM goal_tags) THEN 0.8 ELSE 0 END)
           END AS rel,
           CASE WHEN fb IS NULL AND sentiment < 0.05 THEN 0.5
                ELSE 0.7 * COALESCE(fb, 0.5) + 0.3 * sentiment END AS emo,
           LEAST(1.0, 1 - exp(-retrievals / 5.0)
                      + CASE WHEN fb >= 0.6 THEN 0.2 ELSE 0 END) AS pred,
           0.7 * exp(-GREATEST(0, extract(epoch FROM %(as_of)s - seen)) / 86400 / 30)
             + 0.3 * (1 - exp(-access_count / 10.0)) AS rec
      FROM base b
), scored AS (
    SELECT id, previous,
           round(LEAST(1, GREATEST(0, rel::float))::numeric, 6)::float AS rel,
           round(LEAST(1, GREATEST(0, emo::float))::numeric, 6)::float AS emo,
           round(LEAST(1, GREATEST(0, pred::float))::numeric, 6)::float AS pred,
           round(LEAST(1, GREATEST(0, rec::float))::numeric, 6)::float AS rec
      FROM signals
), final AS (
    SELECT id, previous, rel, emo, pred, rec,
           round(LEAST(1, GREATEST(0, %(w1)s * rel + %(w2)s * emo + %(w3)s * pred
                                       + %(w4)s * rec))::numeric, 6)::float AS score
      FROM scored
), recorded AS (
    INSERT INTO memory_scorerecord (run_id, item_id, relevance_to_goals, emotional_weight,
                                    predictive_value, recency_freq, score, previous_score)
    SELECT %(run)s, id, rel, emo, pred, rec, score, previous FROM final
    RETURNING item_id, score
)
"""

_APPLY_SQL = (
    _SIGNALS_SQL
    + """
UPDATE memory_memoryitem m SET score = recorded.score
  FROM recorded WHERE m.id = recorded.item_id AND m.score IS DISTINCT FROM recorded.score
RETURNING 1
"""
)

_DRY_SQL = _SIGNALS_SQL + "SELECT count(*) FROM recorded"


def meditation_run(
    *,
    ctx: Context,
    user: User,
    dry_run: bool = False,
    as_of: datetime | None = None,
    run: MeditationRun | None = None,
) -> MeditationRun:
    """Score every active memory of the user; a dry run records scores, changes none."""
    if run is None:
        weights = weights_for(user)
        run = MeditationRun.objects.create(
            user=user,
            dry_run=dry_run,
            scoring_version=SCORING_VERSION,
            weights=weights,
            as_of=as_of or timezone.now(),
        )
    w = run.weights
    params = {
        "user": user.pk,
        "run": run.pk,
        "as_of": run.as_of,
        "w1": w["relevance_to_goals"],
        "w2": w["emotional_weight"],
        "w3": w["predictive_value"],
        "w4": w["recency_freq"],
    }
    try:
        with transaction.atomic(), connection.cursor() as cur:
            # One run per user at a time: a second one waits here for the first.
            cur.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                [f"meditate:{user.pk}"],
            )
            run.scores.all().delete()  # a re-run of the same run id starts clean
            cur.execute(_DRY_SQL if run.dry_run else _APPLY_SQL, params)
            rows = cur.fetchall()
            cur.execute(
                "SELECT count(*) FROM memory_scorerecord WHERE run_id = %s", [run.pk]
            )
            run.processed = int(cur.fetchone()[0])
            run.status = MeditationRun.State.DONE
            run.finished_at = timezone.now()
            run.save()
            audit_record(
                ctx=ctx,
                action="meditation.run",
                user_id=user.pk,
                target_type="meditation",
                target_id=str(run.pk),
                details={
                    "dry_run": run.dry_run,
                    "processed": run.processed,
                    "changed": 0 if run.dry_run else len(rows),
                    "scoring_version": run.scoring_version,
                },
            )
    except Exception as exc:
        MeditationRun.objects.filter(pk=run.pk).update(
            status=MeditationRun.State.FAILED,
            error=str(exc)[:2000],
            finished_at=timezone.now(),
        )
        raise
    return run


def meditation_queue(*, user: User, dry_run: bool = False) -> MeditationRun:
    """Create a queued run and hand it to a worker after commit (POST /meditate)."""
    from memory.tasks import meditate_user

    run = MeditationRun.objects.create(
        user=user,
        dry_run=dry_run,
        scoring_version=SCORING_VERSION,
        weights=weights_for(user),
        as_of=timezone.now(),
    )
    transaction.on_commit(lambda: meditate_user.delay(run.pk))
    return run


def meditation_queue_all() -> list[int]:
    """Queue a run for every active user (the nightly schedule)."""
    ids = []
    for user in (
        User.objects.filter(is_active=True).only("id", "meditation_weights").iterator()
    ):
        ids.append(meditation_queue(user=user).pk)
    return ids
