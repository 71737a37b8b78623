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
- predictive_value: 1 - exp(-retrievals/5) from the read provenance, +0.2 when
  the user rated the item useful.
- recency_freq: 0.7·exp(-days since last seen/30) + 0.3·(1 - exp(-accesses/10)).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone

from audit.services import EventSpec, audit_record, audit_record_many
from kimberly.api.errors import invalid_field
from kimberly.context import Actor, Context
from memory import metrics, short_term
from memory.constants import Tier
from memory.models import MeditationRun, Quota
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
    SELECT i.id, i.tier, i.size_bytes, i.score AS previous, i.sentiment, i.tags,
           i.access_count,
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
    SELECT id, tier, size_bytes, previous,
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
    SELECT id, tier, size_bytes, previous,
           round(LEAST(1, GREATEST(0, rel::float))::numeric, 6)::float AS rel,
           round(LEAST(1, GREATEST(0, emo::float))::numeric, 6)::float AS emo,
           round(LEAST(1, GREATEST(0, pred::float))::numeric, 6)::float AS pred,
           round(LEAST(1, GREATEST(0, rec::float))::numeric, 6)::float AS rec
      FROM signals
), final AS (
    SELECT id, tier, size_bytes, previous, rel, emo, pred, rec,
           round(LEAST(1, GREATEST(0, %(w1)s * rel + %(w2)s * emo + %(w3)s * pred
                                       + %(w4)s * rec))::numeric, 6)::float AS score
      FROM scored
), recorded AS (
    INSERT INTO memory_scorerecord (run_id, item_id, tier, size_bytes, relevance_to_goals,
                                    emotional_weight, predictive_value, recency_freq, score,
                                    previous_score, decision, reason)
    SELECT %(run)s, id, tier, size_bytes, rel, emo, pred, rec, score, previous, 'keep', ''
      FROM final
    RETURNING 1
)
SELECT count(*) FROM recorded
"""

# Retention, decided on the run's ScoreRecords (so a dry run decides exactly what
# a real run would), then applied set-wise. "%%" is a literal % for format().
_ROTATE_SQL = """
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
  FROM memory_memoryitem i
 WHERE sr.run_id = %(run)s AND i.id = sr.item_id AND sr.tier = 'short-term'
   AND i.created_at < %(as_of)s - make_interval(hours => %(lifetime)s)
"""

_ARCHIVE_SQL = """
WITH limits AS (
    SELECT t.tier, COALESCE(q.limit_bytes, t.dflt) AS lim
      FROM (VALUES ('short-term', %(d_st)s::bigint), ('long-term', %(d_lt)s::bigint),
                   ('permanent', %(d_pm)s::bigint)) AS t(tier, dflt)
      LEFT JOIN memory_quota q ON q.user_id = %(user)s AND q.tier = t.tier
), live AS (
    SELECT sr.id, sr.decision, sr.size_bytes, sr.score, i.created_at, i.protected,
           CASE WHEN sr.decision = 'promote' THEN 'long-term' ELSE sr.tier END AS ptier
      FROM memory_scorerecord sr JOIN memory_memoryitem i ON i.id = sr.item_id
     WHERE sr.run_id = %(run)s AND sr.decision IN ('keep', 'promote')
), excess AS (
    SELECT l.ptier, sum(l.size_bytes) - min(lim.lim) AS over
      FROM live l JOIN limits lim ON lim.tier = l.ptier GROUP BY l.ptier
), ranked AS (
    -- lowest (score, created_at) first; never protected or just-promoted items
    SELECT l.id, l.ptier, e.over,
           sum(l.size_bytes) OVER (PARTITION BY l.ptier
                                   ORDER BY l.score, l.created_at, l.id) - l.size_bytes AS before
      FROM live l JOIN excess e ON e.ptier = l.ptier
     WHERE e.over > 0 AND NOT l.protected AND l.decision = 'keep'
)
UPDATE memory_scorerecord sr SET decision = 'archive',
       reason = format('%%s is %%s bytes over its quota; archived lowest score first (%%s)',
                       r.ptier, r.over, round(sr.score::numeric, 3))
  FROM ranked r WHERE sr.id = r.id AND r.before < r.over
"""

_PURGE_SQL = """
INSERT INTO memory_scorerecord (run_id, item_id, tier, size_bytes, score, previous_score,
                                decision, reason)
SELECT %(run)s, i.id, i.tier, i.size_bytes, i.score, i.score, 'purge',
       format('archived on %%s, past the %%s-day grace window',
              to_char(i.archived_at, 'YYYY-MM-DD'), %(grace)s)
  FROM memory_memoryitem i
 WHERE i.user_id = %(user)s AND i.status = 'archived' AND NOT i.protected
   AND i.archived_at < %(as_of)s - make_interval(days => %(grace)s)
"""

_CAP_SQL = """
WITH ranked AS (
    SELECT id, row_number() OVER (
               ORDER BY CASE decision WHEN 'expire' THEN 1 WHEN 'promote' THEN 2
                                      WHEN 'archive' THEN 3 ELSE 4 END, score, item_id) AS n
      FROM memory_scorerecord WHERE run_id = %(run)s AND decision <> 'keep'
)
UPDATE memory_scorerecord sr
   SET decision = 'keep', reason = format('deferred to the next run (cap of %%s changes)', %(cap)s)
  FROM ranked r WHERE sr.id = r.id AND r.n > %(cap)s
"""

_APPLY_SQL = [
    # Scores that moved. Rewriting a memory row also recomputes its tsvector and
    # touches its indexes; recency drifts every item a little every night, so
    # moves below MEDITATION_SCORE_EPSILON are left (decisions use the exact
    # scores in the run's records). bench/reports/meditation_scale.md.
    """UPDATE memory_memoryitem m SET score = sr.score FROM memory_scorerecord sr
        WHERE sr.run_id = %(run)s AND m.id = sr.item_id AND sr.decision <> 'purge'
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
        WHERE sr.run_id = %(run)s AND sr.decision IN ('promote', 'expire', 'archive')""",
    """UPDATE memory_memoryitem m SET tier = 'long-term', version = m.version + 1,
              updated_at = now()
         FROM memory_scorerecord sr
        WHERE sr.run_id = %(run)s AND m.id = sr.item_id AND sr.decision = 'promote'""",
    """UPDATE memory_memoryitem m SET status = 'archived', archived_at = now(),
              version = m.version + 1, updated_at = now()
         FROM memory_scorerecord sr
        WHERE sr.run_id = %(run)s AND m.id = sr.item_id AND sr.decision IN ('expire', 'archive')
          AND NOT m.protected""",
    # Django's CASCADE lives in Python, not in the schema: remove what refers to
    # a purged item first (its history and vector; provenance keeps bare ids).
    """DELETE FROM memory_memoryversion v USING memory_scorerecord sr
        WHERE sr.run_id = %(run)s AND v.item_id = sr.item_id AND sr.decision = 'purge'""",
    """DELETE FROM memory_memoryembedding e USING memory_scorerecord sr
        WHERE sr.run_id = %(run)s AND e.item_id = sr.item_id AND sr.decision = 'purge'""",
    """DELETE FROM memory_memoryitem m USING memory_scorerecord sr
        WHERE sr.run_id = %(run)s AND m.id = sr.item_id AND sr.decision = 'purge'
          AND m.user_id = %(user)s AND m.status = 'archived'""",
    # usage from the items themselves: exact, since the quota rows are locked
    """UPDATE memory_quota q SET used_bytes = COALESCE(
              (SELECT sum(size_bytes) FROM memory_memoryitem
                WHERE user_id = q.user_id AND tier = q.tier AND status = 'active'), 0)
        WHERE q.user_id = %(user)s""",
]


def meditation_run(
    *,
    ctx: Context,
    user: User,
    dry_run: bool = False,
    as_of: datetime | None = None,
    run: MeditationRun | None = None,
) -> MeditationRun:
    """Score the user's memories, decide retention, and (unless a dry run) apply it.

    One transaction under a per-user advisory lock: a second run for the same
    user waits; a worker killed mid-run rolls everything back, so the re-delivered
    task starts over and nothing is archived twice.
    """
    if run is None:
        run = MeditationRun.objects.create(
            user=user,
            dry_run=dry_run,
            scoring_version=SCORING_VERSION,
            weights=weights_for(user),
            as_of=as_of or timezone.now(),
        )
    w = run.weights
    defaults = settings.MEMORY_QUOTA_DEFAULTS
    params = {
        "user": user.pk,
        "run": run.pk,
        "as_of": run.as_of,
        "w1": w["relevance_to_goals"],
        "w2": w["emotional_weight"],
        "w3": w["predictive_value"],
        "w4": w["recency_freq"],
        "threshold": settings.MEDITATION_PROMOTE_THRESHOLD,
        "lifetime": settings.MEDITATION_SHORT_TERM_HOURS,
        "grace": settings.MEDITATION_PURGE_GRACE_DAYS,
        "cap": settings.MEDITATION_MAX_CHANGES,
        "epsilon": settings.MEDITATION_SCORE_EPSILON,
        "d_st": defaults["short-term"],
        "d_lt": defaults["long-term"],
        "d_pm": defaults["permanent"],
    }
    started = time.perf_counter()
    try:
        with transaction.atomic(), connection.cursor() as cur:
            # One run per user at a time: a second one waits here for the first.
            cur.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                [f"meditate:{user.pk}"],
            )
            if not run.dry_run:
                # Writers of this user queue on their quota rows until we commit,
                # so the usage recomputed below stays exact.
                for tier in Tier.values:
                    Quota.objects.get_or_create(user_id=user.pk, tier=tier)
                list(Quota.objects.select_for_update().filter(user_id=user.pk))
            run.scores.all().delete()  # a re-delivered run starts clean
            cur.execute(_SIGNALS_SQL, params)
            run.processed = int(cur.fetchone()[0])
            for sql in (_ROTATE_SQL, _ARCHIVE_SQL, _PURGE_SQL, _CAP_SQL):
                cur.execute(sql, params)
            counts = dict(
                run.scores.exclude(decision="keep")
                .values_list("decision")
                .annotate(n=Count("id"))
                .values_list("decision", "n")
            )
            run.deferred = run.scores.filter(reason__startswith="deferred").count()
            if not run.dry_run:
                for sql in _APPLY_SQL:
                    cur.execute(sql, params)
                _audit_decisions(ctx, user, run)
                transaction.on_commit(lambda: short_term.short_term_invalidate(user.pk))
            run.promoted = counts.get("promote", 0)
            run.expired = counts.get("expire", 0)
            run.archived = counts.get("archive", 0)
            run.purged = counts.get("purge", 0)
            run.status = MeditationRun.State.DONE
            run.finished_at = timezone.now()
            run.duration_ms = int((time.perf_counter() - started) * 1000)
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
                    "promoted": run.promoted,
                    "expired": run.expired,
                    "archived": run.archived,
                    "purged": run.purged,
                    "scoring_version": run.scoring_version,
                },
            )
    except Exception as exc:
        metrics.meditation_failures.inc()
        MeditationRun.objects.filter(pk=run.pk).update(
            status=MeditationRun.State.FAILED,
            error=str(exc)[:2000],
            finished_at=timezone.now(),
        )
        raise
    metrics.meditation_seconds.observe(time.perf_counter() - started)
    if not run.dry_run:
        for decision in ("promote", "expire", "archive", "purge"):
            metrics.meditation_items.labels(decision=decision).inc(
                counts.get(decision, 0)
            )
        metrics.meditation_last_success.set_to_current_time()
    return run


def _audit_decisions(ctx: Context, user: User, run: MeditationRun) -> None:
    """Every promotion, expiry, archive and purge, with its reason (no content)."""
    audit_record_many(
        ctx=ctx,
        user_id=user.pk,
        events=[
            EventSpec(
                action=f"memory.{decision}",
                target_type="memory",
                target_id=f"mem_{item_id}",
                details={"reason": reason, "run": run.pk, "tier": tier},
            )
            for item_id, decision, reason, tier in run.scores.exclude(decision="keep")
            .order_by("item_id")
            .values_list("item_id", "decision", "reason", "tier")
        ],
    )


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


def meditation_queue_all(*, dry_run: bool = False) -> MeditationRun:
    """The nightly run: a scope-all run, one queued child run per active user, and
    one `meditate_batch` task per MEDITATION_BATCH_USERS users, sent after commit
    so that the workers share them out. An empty night finishes at once."""
    from memory.tasks import meditate_batch

    parent = _create_all_run(dry_run=dry_run)
    batch: list[MeditationRun] = []

    def flush() -> None:
        ids = [r.pk for r in MeditationRun.objects.bulk_create(batch)]
        transaction.on_commit(lambda: meditate_batch.delay(ids))
        batch.clear()

    with transaction.atomic():
        users = User.objects.filter(is_active=True).only("id", "meditation_weights")
        for user in users.order_by("pk").iterator(chunk_size=2000):
            batch.append(_child_run(parent, user))
            if len(batch) >= settings.MEDITATION_BATCH_USERS:
                flush()
        if batch:
            flush()
    meditation_all_refresh(parent.pk)
    return parent


def meditation_all_inline(*, ctx: Context, dry_run: bool = False) -> MeditationRun:
    """The same scope-all run, done in this process (./cli meditate)."""
    parent = _create_all_run(dry_run=dry_run)
    users = User.objects.filter(is_active=True).only("id", "meditation_weights")
    for user in users.order_by("pk").iterator(chunk_size=2000):
        run = _child_run(parent, user)
        run.save()
        meditation_run(ctx=ctx, user=user, run=run)
    meditation_all_refresh(parent.pk)
    parent.refresh_from_db()
    return parent


def _create_all_run(*, dry_run: bool) -> MeditationRun:
    return MeditationRun.objects.create(
        scope=MeditationRun.Scope.ALL,
        user=None,
        dry_run=dry_run,
        scoring_version=SCORING_VERSION,
        weights=DEFAULT_WEIGHTS,
        as_of=timezone.now(),
    )


def _child_run(parent: MeditationRun, user: User) -> MeditationRun:
    return MeditationRun(
        scope=MeditationRun.Scope.USER,
        parent=parent,
        user=user,
        dry_run=parent.dry_run,
        scoring_version=parent.scoring_version,
        weights=weights_for(user),
        as_of=parent.as_of,
    )


def meditation_run_batch(run_ids: list[int]) -> int:
    """Run the queued user runs among `run_ids` (a worker's share of the night).

    A user whose run fails is recorded as failed and the batch goes on; finished
    runs are skipped, so a re-delivered batch does only what is left.
    """
    ctx = Context(Actor.system("meditation"))
    processed = 0
    parents: set[int] = set()
    runs = MeditationRun.objects.select_related("user").filter(
        pk__in=run_ids, status=MeditationRun.State.QUEUED
    )
    for run in runs.order_by("pk"):
        if run.parent_id is not None:
            parents.add(run.parent_id)
        assert run.user is not None, "user runs have a user"
        try:
            processed += meditation_run(ctx=ctx, user=run.user, run=run).processed
        except Exception as exc:
            logger.exception("meditation run %s failed", run.pk)
            MeditationRun.objects.filter(
                pk=run.pk, status=MeditationRun.State.QUEUED
            ).update(
                status=MeditationRun.State.FAILED,
                error=str(exc)[:2000],
                finished_at=timezone.now(),
            )
    for parent_id in parents:
        meditation_all_refresh(parent_id)
    return processed


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
                     ELSE (extract(epoch FROM COALESCE(s.last, now()) - p.started_at)
                           * 1000)::int END
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
    """Recompute a scope-all run from its children (exact, so safe to repeat)."""
    with connection.cursor() as cur:
        cur.execute(_ALL_REFRESH_SQL, {"parent": parent_id})
