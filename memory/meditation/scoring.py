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

from users.models import User
from users.preferences import DEFAULT_WEIGHTS

SCORING_VERSION = "v1"


def weights_for(user: User) -> dict[str, float]:
    return dict(user.meditation_weights or DEFAULT_WEIGHTS)


# Every statement works on a batch of runs (one per user): the arrays %(users)s,
# %(runs)s, %(as_of)s and %(w1..4)s are aligned, one element per run. A batch
# of one is a single user's run; the nightly workers pass MEDITATION_BATCH_USERS.
BATCH = """unnest(%(users)s::uuid[], %(runs)s::bigint[], %(as_of)s::timestamptz[],
                   %(w1)s::float8[], %(w2)s::float8[], %(w3)s::float8[], %(w4)s::float8[])
            AS b(user_id, run_id, as_of, w1, w2, w3, w4)"""


# bandit B608 (SQL from strings): only BATCH is interpolated; values are parameters.
SIGNALS_SQL = f"""
WITH batch AS (SELECT * FROM {BATCH}
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
"""  # nosec B608
