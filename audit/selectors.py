"""Reading the audit log: a user's own events, and verification of every chain."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import DEFAULT_DB_ALIAS
from django.db.models import QuerySet

from audit.models import AuditAnchor, AuditEvent
from audit.services import GENESIS, chain_hash


def audit_events_for_user(
    *,
    user_id: uuid.UUID,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    target: tuple[str, str] | None = None,
) -> QuerySet[AuditEvent]:
    """The user's own events, newest first; `target` (type, id): those about one
    thing, e.g. ("memory", "mem_<uuid>")."""
    qs = AuditEvent.objects.filter(user_id=user_id)
    if target:
        qs = qs.filter(target_type=target[0], target_id=target[1])
    if action:
        qs = qs.filter(action=action)
    if since:
        qs = qs.filter(created_at__gte=since)
    if until:
        qs = qs.filter(created_at__lt=until)
    return qs.order_by("-created_at", "-seq")


@dataclass(frozen=True)
class ChainBreak:
    event_id: int
    user_id: uuid.UUID | None
    seq: int
    reason: str


@dataclass(frozen=True)
class VerifyReport:
    chains: int
    events: int
    first_break: ChainBreak | None


def latest_anchor(
    owner: uuid.UUID | None, *, using: str = DEFAULT_DB_ALIAS
) -> AuditAnchor | None:
    """Where retention last cut this chain (None: never)."""
    return (
        AuditAnchor.objects.using(using)
        .filter(user_id=owner)
        .order_by("-through_seq")
        .first()
    )


def _iter_chain(
    user_id: uuid.UUID | None, after_seq: int, using: str
) -> Iterator[AuditEvent]:
    return (
        AuditEvent.objects.using(using)
        .filter(user_id=user_id, seq__gt=after_seq)
        .order_by("seq")
        .iterator(chunk_size=2000)
    )


# A cut is at least this far behind the moment it is made (the database
# enforces the same: audit/migrations/0005).
MIN_CUT_AGE = timedelta(days=1)


def _confirms(event: AuditEvent, anchor: AuditAnchor) -> bool:
    return (
        event.action == "audit.prune"
        and event.details.get("through_seq") == anchor.through_seq
        and event.details.get("through_hash") == anchor.through_hash
        and event.created_at - anchor.cut_before >= MIN_CUT_AGE
    )


def _verify_chain(owner: uuid.UUID | None, using: str) -> tuple[int, ChainBreak | None]:
    """How many events the chain holds, and its first break. A cut committed
    while the chain was read shows as a gap: read it once more."""
    anchor = latest_anchor(owner, using=using)
    events, first_break = _verify_from(owner, anchor, using)
    if first_break is not None and latest_anchor(owner, using=using) != anchor:
        return _verify_from(owner, latest_anchor(owner, using=using), using)
    return events, first_break


def _verify_from(
    owner: uuid.UUID | None, anchor: AuditAnchor | None, using: str
) -> tuple[int, ChainBreak | None]:
    """A chain cut by retention starts from its newest anchor, which a later
    `audit.prune` event of the same chain must confirm."""
    prev, expected_seq = GENESIS, 1
    if anchor is not None:
        prev, expected_seq = anchor.through_hash, anchor.through_seq + 1
    confirmed, events, event = anchor is None, 0, None
    for event in _iter_chain(owner, expected_seq - 1, using):
        events += 1
        reason = None
        if event.seq != expected_seq:
            reason = f"sequence gap: expected {expected_seq}, found {event.seq}"
        elif event.prev_hash != prev:
            reason = "prev_hash does not match the previous event"
        elif chain_hash(prev, event) != event.hash:
            reason = "hash does not match the event's contents"
        if reason:
            return events, ChainBreak(event.id, owner, event.seq, reason)
        confirmed = confirmed or _confirms(event, anchor)  # type: ignore[arg-type]
        prev, expected_seq = event.hash, expected_seq + 1
    if not confirmed:
        assert anchor is not None
        return events, ChainBreak(
            event.id if event else 0,
            owner,
            anchor.through_seq,
            "the chain's cut is not confirmed by an audit.prune event",
        )
    return events, None


def audit_verify(
    *, user_id: uuid.UUID | None = None, using: str = DEFAULT_DB_ALIAS
) -> VerifyReport:
    """Recompute every chain (or one user's); report the first event that does not
    fit. `using`: another database alias (a restored backup's, backups/)."""
    if user_id is not None:
        owners: list[uuid.UUID | None] = [user_id]
    else:
        owners = list(
            AuditEvent.objects.using(using)
            .order_by()
            .values_list("user_id", flat=True)
            .distinct()
        )
    events = 0
    for owner in owners:
        n, first_break = _verify_chain(owner, using)
        events += n
        if first_break:
            return VerifyReport(len(owners), events, first_break)
    return VerifyReport(len(owners), events, None)
