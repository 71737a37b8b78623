"""Retention: decided on a run's ScoreRecords, applied set-wise."""

from __future__ import annotations

from memory.meditation.scoring import BATCH
from memory.metadata import metadata_sql
from memory.quotas import effective_limit_sql

# Retention, decided on the runs' ScoreRecords (so a dry run decides exactly what
# a real run would), then applied set-wise. "%%" is a literal % for format().
# bandit B608 (SQL from strings) on these statements: only SQL fragments made in
# code are interpolated (BATCH, effective_limit_sql: constants and the Tier
# enum); every value is a %(name)s parameter.
ROTATE_SQL = f"""
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
  FROM memory_memoryitem i, {BATCH}
 WHERE sr.run_id = b.run_id AND i.id = sr.item_id AND sr.tier = 'short-term'
   AND i.created_at < b.as_of - make_interval(hours => %(lifetime)s)
"""  # nosec B608


ARCHIVE_SQL = f"""
WITH limits AS (
    SELECT b.run_id, t.tier, {effective_limit_sql("q", "t.tier")} AS lim
      FROM {BATCH}
     CROSS JOIN unnest(%(tiers)s::text[]) AS t(tier)
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
"""  # nosec B608


PURGE_SQL = f"""
INSERT INTO memory_scorerecord (run_id, item_id, tier, size_bytes, score, previous_score,
                                decision, reason)
SELECT b.run_id, i.id, i.tier, i.size_bytes, i.score, i.score, 'purge',
       format('archived on %%s, past the %%s-day grace window',
              to_char(i.archived_at, 'YYYY-MM-DD'), %(grace)s)
  FROM {BATCH} JOIN memory_memoryitem i ON i.user_id = b.user_id
 WHERE i.status = 'archived' AND NOT i.protected
   AND i.archived_at < b.as_of - make_interval(days => %(grace)s)
"""  # nosec B608


CAP_SQL = """
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


COUNTS_SQL = """
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
SEEN_SQL = """
CREATE TEMP TABLE meditation_seen ON COMMIT DROP AS
SELECT id AS item_id, user_id, version FROM memory_memoryitem
 WHERE user_id = ANY(%(users)s)
"""


RECHECK_SQL = """
UPDATE memory_scorerecord sr
   SET decision = 'keep',
       reason = format('changed during the run: %%s not applied', sr.decision)
 WHERE sr.run_id = ANY(%(runs)s) AND sr.decision <> 'keep'
   AND NOT EXISTS (SELECT 1 FROM memory_memoryitem m
                     JOIN meditation_seen s ON s.item_id = m.id AND s.version = m.version
                    WHERE m.id = sr.item_id)
"""


# An archive is decided on a whole tier's usage, not on the item alone: if the
# user deleted, moved or archived anything during the run (or a promotion was
# withdrawn), the overage it was meant to cure may be gone. Such a run archives
# nothing; the next run decides again on what is there then.
ARCHIVE_RECHECK_SQL = """
WITH changed AS (
    SELECT DISTINCT s.user_id FROM meditation_seen s
      LEFT JOIN memory_memoryitem m ON m.id = s.item_id
     WHERE m.id IS NULL OR m.version <> s.version
)
UPDATE memory_scorerecord sr
   SET decision = 'keep',
       reason = 'memories changed during the run: archive not applied'
  FROM memory_meditationrun r JOIN changed c ON c.user_id = r.user_id
 WHERE sr.run_id = ANY(%(runs)s) AND sr.decision = 'archive' AND r.id = sr.run_id
"""


APPLY_SQL = [
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
    # history: the state each changed item had before this run (B608: only
    # metadata_sql's fixed SQL is interpolated; values are parameters)
    f"""INSERT INTO memory_memoryversion (item_id, version, action, actor_type, actor_id,
                                         changed_at, tier, status, protected, content, sealed,
                                         metadata)
       SELECT m.id, m.version, 'meditation.' || sr.decision, 'system', 'meditation', now(),
              m.tier, m.status, m.protected, m.content, m.sealed,
              {metadata_sql("m")}
         FROM memory_memoryitem m JOIN memory_scorerecord sr ON sr.item_id = m.id
        WHERE sr.run_id = ANY(%(runs)s) AND sr.decision IN ('promote', 'expire', 'archive')""",  # nosec B608
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
