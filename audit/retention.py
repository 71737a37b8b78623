"""Cutting audit chains by their retention policy without breaking `audit verify`.

A cut deletes a prefix of one chain (every event up to `through_seq`), and only
after it is recorded twice: an `audit.prune` event appended to the same chain
(under the chain's lock, so nothing forks) and an AuditAnchor holding the hash
of the last deleted event. Verification then starts from the newest anchor
instead of the genesis hash, and requires the chain to confirm it. The database
refuses any other DELETE (migration 0005).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from audit.models import AuditAnchor, AuditEvent
from audit.selectors import MIN_CUT_AGE
from audit.services import audit_record, chain_key
from kimberly.context import Context


def audit_prune(
    *, ctx: Context, cutoff: datetime, user_id: uuid.UUID | None = None
) -> int:
    """Cut the events from before `cutoff`: of one user's chain, or with no user
    of every chain (the global one too). Returns how many events went."""
    if user_id is not None:
        return audit_prune_chain(ctx=ctx, owner=user_id, cutoff=cutoff)
    owners = (
        AuditEvent.objects.filter(created_at__lt=cutoff)
        .order_by()
        .values_list("user_id", flat=True)
        .distinct()
    )
    return sum(
        audit_prune_chain(ctx=ctx, owner=owner, cutoff=cutoff) for owner in list(owners)
    )


@transaction.atomic
def audit_prune_chain(
    *, ctx: Context, owner: uuid.UUID | None, cutoff: datetime
) -> int:
    """Cut one chain (None: the global chain) before `cutoff`, under the chain's
    lock (taken first, so two passes never cut the same prefix twice)."""
    if cutoff > timezone.now() - MIN_CUT_AGE:
        raise ValueError("an audit chain is never cut less than a day back")
    with connection.cursor() as cur:
        cur.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
            [chain_key(owner)],
        )
    last = (
        AuditEvent.objects.filter(user_id=owner, created_at__lt=cutoff)
        .order_by("-seq")
        .first()
    )
    if last is None:
        return 0
    pruned = AuditEvent.objects.filter(user_id=owner, seq__lte=last.seq).count()
    details = {
        "through_seq": last.seq,
        "through_hash": last.hash,
        "pruned": pruned,
        "cut_before": cutoff.isoformat(),
    }
    # First the event (it takes the chain's lock), then the anchor, then the cut.
    audit_record(
        ctx=ctx,
        action="audit.prune",
        user_id=owner,
        target_type="audit",
        details=details,
    )
    AuditAnchor.objects.create(
        user_id=owner,
        through_seq=last.seq,
        through_hash=last.hash,
        pruned=pruned,
        cut_before=cutoff,
    )
    with connection.cursor() as cur:
        cur.execute(
            "SELECT set_config('kimberly.audit_prune', %s, true)",
            [f"{owner or 'global'}:{last.seq}"],
        )
        cur.execute(
            """DELETE FROM audit_auditevent
                WHERE user_id IS NOT DISTINCT FROM %s AND seq <= %s""",
            [owner, last.seq],
        )
        deleted = cur.rowcount
        cur.execute("SELECT set_config('kimberly.audit_prune', '', true)")
    return int(deleted)
