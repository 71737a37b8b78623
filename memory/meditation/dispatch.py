"""Handing runs to workers: on demand, nightly (a scope-all run fanned out in batches), and again when stale."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from functools import partial

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from kimberly.context import Actor, Context
from memory import metrics
from memory.meditation.runs import attempt, meditation_run_many, user_run
from memory.meditation.scoring import SCORING_VERSION
from memory.models import MeditationRun
from users.models import User
from users.preferences import DEFAULT_WEIGHTS

logger = logging.getLogger(__name__)


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
            # a run a worker is executing holds its row lock: not reused, or
            # the user's changes since would wait for a run that never comes
            .select_for_update(skip_locked=True)
            .order_by("pk")
            .first()
        )
        if run is None:
            run = user_run(user, dry_run=dry_run)
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


def meditation_prune_records(
    *, cutoff: datetime, user_id: uuid.UUID | None = None
) -> int:
    """Drop the score records of runs started before `cutoff` (one user's, or
    everyone's): the retention policy of telemetry. Runs and audit events stay."""
    with connection.cursor() as cur:
        cur.execute(
            """DELETE FROM memory_scorerecord sr USING memory_meditationrun r
                WHERE sr.run_id = r.id AND r.started_at < %s
                  AND (%s::uuid IS NULL OR r.user_id = %s::uuid)""",
            [cutoff, user_id, user_id],
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


def _child_batches(parent: MeditationRun) -> Iterator[list[int]]:
    """Create the scope-all run's child runs, one per active user, and yield
    their ids MEDITATION_BATCH_USERS at a time."""
    users = User.objects.filter(is_active=True).only("id", "meditation_weights")
    batch: list[MeditationRun] = []
    for user in users.order_by("pk").iterator(chunk_size=2000):
        batch.append(
            user_run(user, dry_run=parent.dry_run, as_of=parent.as_of, parent=parent)
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
            attempt(ctx=ctx, runs=group)
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
        .values_list("pk", "started_at")[:20_000]
    )
    # A run stale twice over was sent again before and still did not finish: its
    # batch may be one that always hits the time limit (one transaction, so all
    # of it rolls back). Sent alone, each such run finishes or fails by itself.
    twice = cutoff - timedelta(minutes=settings.MEDITATION_STALE_MINUTES)
    alone = [[pk] for pk, started in stale if started < twice]
    fresh = [pk for pk, started in stale if started >= twice]
    size = settings.MEDITATION_BATCH_USERS
    for ids in alone + [fresh[i : i + size] for i in range(0, len(fresh), size)]:
        meditate_batch.delay(ids)
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
