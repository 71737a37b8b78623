"""Quotas per user and tier: exact byte accounting under concurrent writes.

Every change of `used_bytes` is one conditional UPDATE that checks the hard limit
and adds the delta in the same statement. PostgreSQL row-locks the quota row for
the rest of the caller's transaction, so concurrent writers queue on it and none
can overshoot; a refused write changes nothing.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, QuerySet

from audit.services import audit_record
from kimberly.api.errors import ApplicationError, ValidationFailed
from kimberly.context import Context
from memory import metrics
from memory.constants import Status, Tier
from memory.models import MemoryItem, Quota


class QuotaExceeded(ApplicationError):
    code = "quota_exceeded"
    status = 429


MAX_LIMIT_BYTES = 2**50  # 1 PiB: far beyond any plan, far below bigint overflow


def default_limit(tier: str) -> int:
    return int(settings.MEMORY_QUOTA_DEFAULTS[tier])


# The effective-quota rule, the one place it is written (billing will change it
# here): a user's per-tier override, else the tier's default; writes may burst to
# QUOTA_HARD_LIMIT_RATIO times it. effective_limit_sql is the same rule for the
# set-wise statements; limit_params supplies its parameters; a test holds the
# two versions equal.


def effective_limit(*, limit_bytes: int | None, tier: str) -> int:
    """The soft quota of a tier: the user's override, else the default."""
    return limit_bytes if limit_bytes is not None else default_limit(tier)


def hard_limit(limit_bytes: int) -> int:
    return math.floor(limit_bytes * settings.QUOTA_HARD_LIMIT_RATIO)


def effective_limit_sql(quota: str, tier: str) -> str:
    """effective_limit in SQL: `quota` a memory_quota row alias (or NULL row), `tier`
    a tier expression; needs limit_params()."""
    cases = " ".join(
        f"WHEN '{t}' THEN %(quota_default_{i})s::bigint"
        for i, t in enumerate(Tier.values)
    )
    return f"COALESCE({quota}.limit_bytes, CASE {tier} {cases} END)"


def hard_limit_sql(quota: str, tier: str) -> str:
    return f"FLOOR({effective_limit_sql(quota, tier)} * %(quota_ratio)s)"


def limit_params() -> dict[str, Any]:
    """The parameters effective_limit_sql and hard_limit_sql refer to."""
    params: dict[str, Any] = {
        f"quota_default_{i}": default_limit(t) for i, t in enumerate(Tier.values)
    }
    params["quota_ratio"] = settings.QUOTA_HARD_LIMIT_RATIO
    return params


# bandit B608 (SQL from strings): hard_limit_sql is made of fixed names and the
# Tier enum; values are parameters.
_RESERVE_SQL = f"""
UPDATE memory_quota
   SET used_bytes = used_bytes + %(delta)s
 WHERE user_id = %(user_id)s AND tier = %(tier)s
   AND (%(delta)s <= 0
        OR used_bytes + %(delta)s <= {hard_limit_sql("memory_quota", "tier")})
RETURNING used_bytes
"""  # nosec B608


_CREATE_SQL = """
INSERT INTO memory_quota (user_id, tier, used_bytes) VALUES (%(user_id)s, %(tier)s, 0)
ON CONFLICT (user_id, tier) DO NOTHING
"""


def _reserve(cur: Any, params: dict[str, Any]) -> int | None:
    cur.execute(_RESERVE_SQL, params)
    row = cur.fetchone()
    return None if row is None else int(row[0])


def quota_adjust(*, user_id: uuid.UUID, tier: str, delta: int) -> int:
    """Add `delta` bytes to the tier's usage or raise QuotaExceeded (429); returns usage.

    Must run inside the transaction that writes the items, so usage and items
    commit or roll back together. A user without a quota row gets one here.
    """
    assert transaction.get_connection().in_atomic_block, (
        "quota_adjust needs a transaction"
    )
    params: dict[str, Any] = {
        "delta": delta,
        "user_id": user_id,
        "tier": tier,
        **limit_params(),
    }
    with connection.cursor() as cur:
        used = _reserve(cur, params)
        if used is None:
            # Over the limit, or no row yet (a new user's first writes). A row
            # another transaction is inserting is invisible to the UPDATE; ON
            # CONFLICT waits for that transaction and then does nothing, so the
            # second UPDATE (a new snapshot) sees the row whoever created it.
            cur.execute(_CREATE_SQL, params)
            used = _reserve(cur, params)
    if used is not None:
        return used
    quota = Quota.objects.get(user_id=user_id, tier=tier)
    limit = effective_limit(limit_bytes=quota.limit_bytes, tier=tier)
    metrics.quota_rejections.labels(tier=tier).inc()
    raise QuotaExceeded(
        f"The {tier} tier is full: this write would pass its hard limit.",
        details={
            "tier": tier,
            "used_bytes": quota.used_bytes,
            "limit_bytes": limit,
            "hard_limit_bytes": hard_limit(limit),
            "requested_bytes": delta,
        },
    )


def quota_lock(*, user_id: uuid.UUID, tiers: Iterable[str]) -> None:
    """Lock the user's quota rows of `tiers` (made if missing) for the rest of the
    caller's transaction, in sorted tier order.

    Writers take the quota row before any other lock they then wait on (the
    unique index entries of the rows they insert): two writers then queue on the
    quota row instead of each holding what the other waits for (a deadlock).
    """
    for tier in sorted(set(tiers)):
        quota_adjust(user_id=user_id, tier=tier, delta=0)


def quota_headroom(*, user_id: uuid.UUID, tier: str) -> int:
    """Bytes the tier can still take before its hard limit (may be negative).

    Locks the user's quota row for the rest of the caller's transaction (a
    zero-delta quota_adjust), so the answer holds until it commits: a batch can
    fit items into it one by one and then reserve their sum.
    """
    used = quota_adjust(user_id=user_id, tier=tier, delta=0)
    limit_bytes = (
        Quota.objects.filter(user_id=user_id, tier=tier)
        .values_list("limit_bytes", flat=True)
        .get()
    )
    return hard_limit(effective_limit(limit_bytes=limit_bytes, tier=tier)) - used


@dataclass(frozen=True)
class TierUsage:
    tier: str
    quota_bytes: int
    hard_limit_bytes: int
    used_bytes: int
    override: bool
    active_items: int
    archived_items: int


def item_counts(items: QuerySet[MemoryItem]) -> dict[tuple[str, str], int]:
    """How many of `items` there are per (tier, status): one grouped count."""
    return {
        (row["tier"], row["status"]): row["n"]
        for row in items.values("tier", "status").annotate(n=Count("id")).order_by()
    }


def quota_overview(
    *, user_id: uuid.UUID, counts: Mapping[tuple[str, str], int] | None = None
) -> list[TierUsage]:
    """Quota, hard limit, usage and item counts of every tier of one user (the
    counts of all their items, unless the caller has counted already)."""
    quotas = {q.tier: q for q in Quota.objects.filter(user_id=user_id)}
    if counts is None:
        counts = item_counts(MemoryItem.objects.filter(user_id=user_id))
    out = []
    for tier in Tier.values:
        q = quotas.get(tier)
        override = q is not None and q.limit_bytes is not None
        limit = effective_limit(limit_bytes=q.limit_bytes if q else None, tier=tier)
        out.append(
            TierUsage(
                tier=tier,
                quota_bytes=limit,
                hard_limit_bytes=hard_limit(limit),
                used_bytes=q.used_bytes if q else 0,
                override=override,
                active_items=counts.get((tier, Status.ACTIVE), 0),
                archived_items=counts.get((tier, Status.ARCHIVED), 0),
            )
        )
    return out


@transaction.atomic
def quota_set(
    *, ctx: Context, user_id: uuid.UUID, tier: str, limit_bytes: int | None
) -> Quota:
    """Override a user's quota for one tier (None restores the default); audited."""
    if tier not in Tier.values:
        raise ValidationFailed(f"Unknown tier {tier!r}.", details={"tier": tier})
    if limit_bytes is not None and not 0 <= limit_bytes <= MAX_LIMIT_BYTES:
        raise ValidationFailed(
            f"limit must be between 0 and {MAX_LIMIT_BYTES} bytes.",
            details={"limit": limit_bytes},
        )
    quota, _ = Quota.objects.select_for_update().get_or_create(
        user_id=user_id, tier=tier
    )
    before = quota.limit_bytes
    quota.limit_bytes = limit_bytes
    quota.save(update_fields=["limit_bytes"])
    audit_record(
        ctx=ctx,
        action="quota.change",
        user_id=user_id,
        target_type="quota",
        target_id=tier,
        details={"tier": tier, "before": before, "after": limit_bytes},
    )
    return quota
