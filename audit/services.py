"""Writing the audit log: one chained event per call, inside the caller's transaction."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from audit import metrics
from audit.models import AuditEvent
from kimberly.context import Context

GENESIS = "0" * 64


def canonical(event: AuditEvent) -> bytes:
    """The fields the hash covers, in a stable serialization."""
    return json.dumps(
        {
            "user_id": str(event.user_id) if event.user_id else None,
            "seq": event.seq,
            "actor": [event.actor_type, event.actor_id],
            "action": event.action,
            "target": [event.target_type, event.target_id],
            "request": [event.request_id, event.ip, event.user_agent],
            "details": event.details,
            "created_at": event.created_at.isoformat(),
        },
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    ).encode()


def chain_key(owner: uuid.UUID | None) -> str:
    """The advisory-lock key that serializes appends to one chain."""
    return f"audit:{owner or 'global'}"


def chain_hash(prev_hash: str, event: AuditEvent) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical(event)).hexdigest()


@dataclass(frozen=True)
class EventSpec:
    action: str
    target_type: str = ""
    target_id: str = ""
    details: dict[str, Any] | None = None


def audit_record(
    *,
    ctx: Context,
    action: str,
    user_id: uuid.UUID | str | None,
    target_type: str = "",
    target_id: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append an event to the user's chain. Callers pass no memory content in details."""
    return audit_record_many(
        ctx=ctx,
        user_id=user_id,
        events=[EventSpec(action, target_type, target_id, details)],
    )[0]


# No savepoint: callers are already inside their own transaction, and an event
# that fails to write must fail the whole change it describes.
@transaction.atomic(savepoint=False)
def audit_record_many(
    *, ctx: Context, user_id: uuid.UUID | str | None, events: list[EventSpec]
) -> list[AuditEvent]:
    """Append several events to one user's chain with one lock and one INSERT."""
    uid = uuid.UUID(str(user_id)) if user_id else None
    return audit_record_chains(ctx=ctx, events={uid: events})


@transaction.atomic(savepoint=False)
def audit_record_chains(
    *, ctx: Context, events: dict[uuid.UUID | None, list[EventSpec]]
) -> list[AuditEvent]:
    """Append events to several users' chains: one round trip takes every chain's
    lock (in a fixed order, so two callers never deadlock) and reads its tip, and
    one INSERT writes them all. `None` is the global chain."""
    # One chain per user: appends are serialized by a transaction-scoped advisory
    # lock (released at commit) taken together with reading the chain's tip, so
    # two writers never fork the chain (see migration 0003).
    owners = sorted(events, key=lambda u: str(u or ""))
    with connection.cursor() as cur:
        cur.execute(
            """SELECT o.n, t.tip_seq, t.tip_hash
                 FROM (SELECT * FROM unnest(%s::text[], %s::uuid[]) WITH ORDINALITY
                                AS o(chain, owner, n) ORDER BY n) o,
                      LATERAL audit_chain_tip(o.chain, o.owner) t
                ORDER BY o.n""",
            [[chain_key(u) for u in owners], owners],
        )
        tips = {owners[n - 1]: (seq, h) for n, seq, h in cur.fetchall()}
    now = timezone.now()
    built = []
    for uid in owners:
        tip_seq, tip_hash = tips[uid]
        seq, prev_hash = (tip_seq, tip_hash) if tip_seq else (0, GENESIS)
        for spec in events[uid]:
            seq += 1
            event = AuditEvent(
                user_id=uid,
                seq=seq,
                actor_type=ctx.actor.type,
                actor_id=ctx.actor.id[:64],
                action=spec.action,
                target_type=spec.target_type,
                target_id=spec.target_id[:64],
                request_id=ctx.meta.request_id[:64],
                ip=ctx.meta.ip[:64],
                user_agent=ctx.meta.user_agent[:256],
                details=json.loads(json.dumps(spec.details or {}, default=str)),
                created_at=now,
                prev_hash=prev_hash,
            )
            event.hash = chain_hash(prev_hash, event)
            prev_hash = event.hash
            built.append(event)
            metrics.events.labels(action=spec.action).inc()
    if len(built) == 1:
        built[0].save(force_insert=True)
    else:
        AuditEvent.objects.bulk_create(built, batch_size=1000)
    return built
