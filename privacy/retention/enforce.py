"""Enforcing the retention policies: per data type, what goes and how to count
what is left past its window (the compliance check's question).

Each data type names a purge (`cutoff`, one user or everyone) owned by the app
whose data it is, and a count of the records from before a cutoff. A pass
applies the system window to everyone at once, then each shorter user value to
that user alone, and records a RetentionRun.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from audit.models import AuditEvent
from audit.retention import audit_prune
from chat.models import Message
from chat.retention import messages_prune
from kimberly.context import Actor, Context
from memory.constants import Tier
from memory.meditation import meditation_prune_records
from memory.models import MemoryItem, RetrievalRecord, ScoreRecord
from memory.retrieval import retrieval_records_prune
from memory.services.retention import short_term_prune
from privacy.exports.models import DataExport
from privacy.exports.services import exports_prune
from privacy.retention import policies
from privacy.retention.models import DataType, RetentionRun

logger = logging.getLogger(__name__)
LOCK = "privacy:retention"


def _ctx_free(
    purge: Callable[..., int],
) -> Callable[..., int]:
    """A purge that takes no Context (it audits nothing itself)."""

    def wrapped(*, ctx: Context, cutoff: datetime, user_id: uuid.UUID | None) -> int:
        return purge(cutoff=cutoff, user_id=user_id)

    return wrapped


def _export_rows() -> QuerySet[DataExport]:
    return DataExport.objects.exclude(
        status__in=[DataExport.State.QUEUED, DataExport.State.RUNNING]
    )


@dataclass(frozen=True)
class Kind:
    purge: Callable[..., int]  # (ctx=, cutoff=, user_id=) -> how many went
    rows: Callable[[], QuerySet]  # what the policy covers
    time_field: str  # their age
    user_field: str  # their owner


KINDS: dict[str, Kind] = {
    DataType.CHAT_MESSAGES: Kind(
        messages_prune, Message.objects.all, "created_at", "user_id"
    ),
    DataType.SHORT_TERM_MEMORIES: Kind(
        short_term_prune,
        lambda: MemoryItem.objects.filter(tier=Tier.SHORT_TERM, protected=False),
        "created_at",
        "user_id",
    ),
    DataType.RETRIEVAL_RECORDS: Kind(
        _ctx_free(retrieval_records_prune),
        RetrievalRecord.objects.all,
        "created_at",
        "user_id",
    ),
    DataType.EXPORTS: Kind(exports_prune, _export_rows, "created_at", "user_id"),
    DataType.AUDIT_EVENTS: Kind(
        audit_prune, AuditEvent.objects.all, "created_at", "user_id"
    ),
    DataType.TELEMETRY: Kind(
        _ctx_free(meditation_prune_records),
        ScoreRecord.objects.all,
        "run__started_at",
        "run__user_id",
    ),
}


def records_before(
    data_type: str, cutoff: datetime, user_id: uuid.UUID | None = None
) -> int:
    """How many records of `data_type` (one user's, or everyone's) are older
    than `cutoff`."""
    kind = KINDS[data_type]
    rows = kind.rows().filter(**{f"{kind.time_field}__lt": cutoff})
    if user_id is not None:
        rows = rows.filter(**{kind.user_field: user_id})
    return int(rows.count())


@contextmanager
def _one_pass_at_a_time() -> Iterator[bool]:
    """A session lock: the nightly task, a redelivery of it and `./cli compliance
    retention --enforce` never cut the same data at once."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", [LOCK])
        got = bool(cur.fetchone()[0])
    try:
        yield got
    finally:
        if got:
            with connection.cursor() as cur:
                cur.execute(
                    "SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [LOCK]
                )


def _enforce_one(ctx: Context, data_type: str, days: int, now: datetime) -> int:
    """One data type: the system window for everyone, then each shorter one. A
    failure (object storage down, say) is recorded and stops only this type."""
    started, deleted, own, error = timezone.now(), 0, 0, ""
    kind, cutoff = KINDS[data_type], now - timedelta(days=days)
    try:
        deleted += kind.purge(ctx=ctx, cutoff=cutoff, user_id=None)
        for user_id, own_days in sorted(
            policies.users_with_own_policy(data_type).items()
        ):
            if own_days < days:
                own += 1
                deleted += kind.purge(
                    ctx=ctx, cutoff=now - timedelta(days=own_days), user_id=user_id
                )
    except Exception as exc:  # recorded; the other types go on
        logger.exception("retention %s failed", data_type)
        error = f"{type(exc).__name__}: {exc}"[:300]
    RetentionRun.objects.create(
        data_type=data_type,
        started_at=started,
        finished_at=timezone.now(),
        cutoff=cutoff,
        deleted=deleted,
        users_with_own_policy=own,
        error=error,
    )
    logger.info("retention %s: %d deleted", data_type, deleted)
    return deleted


def retention_enforce(
    *, data_types: list[str] | None = None, now: datetime | None = None
) -> dict[str, int]:
    """One pass over `data_types` (default: all); {data type: records deleted}.
    Empty when another pass holds the lock."""
    ctx = Context(Actor.system("retention"))
    now = now or timezone.now()
    with _one_pass_at_a_time() as got:
        if not got:
            logger.warning("retention: another pass is running; this one skips")
            return {}
        system = policies.system_days()
        return {
            data_type: _enforce_one(ctx, data_type, system[data_type], now)
            for data_type in data_types or list(DataType.values)
        }


def last_runs() -> dict[str, RetentionRun]:
    """The newest enforcement pass of each data type that did not fail."""
    runs = (
        RetentionRun.objects.filter(error="")
        .order_by("data_type", "-finished_at")
        .distinct("data_type")
    )
    return {run.data_type: run for run in runs}
