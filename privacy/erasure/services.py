"""Erasing an account: the request (tokens die, the account stops at once), the
job that deletes the user from every store (privacy/erasure/stores.py), and the
receipt its verification pass writes.

The job is safe to run twice: every step deletes what is still there, and the
probes are read from the stores, not from the counts. It runs as set-wise
maintenance (every table of one user), not as a request of that user.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from audit.services import audit_record
from kimberly.api.errors import ValidationFailed
from kimberly.context import Actor, Context
from privacy.erasure import stores
from privacy.erasure.models import Deletion
from privacy.erasure.redis_keys import (
    EMBED_PENDING,
    REDIS_KEYS,
    RETRIEVAL_LOG,
    Subject,
    rate_keys_of,
)
from users.models import User

logger = logging.getLogger(__name__)

# The Redis entries a flush could turn into rows (queued retrieval records) and
# the queue of item ids go before the rows do; everything else after.
_REDIS_FIRST = tuple(
    k for k in REDIS_KEYS if k.prefix in {RETRIEVAL_LOG, EMBED_PENDING}
)


class ConfirmationRequired(ValidationFailed):
    code = "confirmation_required"


@dataclass(frozen=True)
class Requested:
    deletion: Deletion
    receipt_token: str  # shown once; only its hash is kept


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _stop_account(user: User) -> int:
    """Tokens and sessions die, the account is deactivated: nothing new is written
    for it (authentication refuses an inactive user)."""
    from knox.models import AuthToken

    tokens, _ = AuthToken.objects.filter(user=user).delete()
    stores.sessions_erase(Subject(user_id=user.pk))
    User.objects.filter(pk=user.pk).update(is_active=False)
    user.is_active = False
    return int(tokens)


@transaction.atomic
def deletion_request(
    *, ctx: Context, user: User, confirm: object, by: str = "user", send: bool = True
) -> Requested:
    """Stop the account now and queue its erasure (with `send`, its task after
    commit); 400 confirmation_required (nothing changes) unless `confirm` is
    true. A second request while one is queued returns that deletion with a new
    receipt token (the old one stops working)."""
    if confirm is not True:
        raise ConfirmationRequired(
            "Deleting the account needs confirm: true.",
            details={"confirm": ["must be true"]},
        )
    token = secrets.token_urlsafe(32)
    deletion = (
        Deletion.objects.select_for_update()
        .filter(user_id=user.pk, status__in=[Deletion.State.QUEUED])
        .first()
    )
    if deletion is None:
        deletion = Deletion.objects.create(
            user_id=user.pk, requested_by=by, token_hash=token_hash(token)
        )
    else:
        deletion.token_hash = token_hash(token)
        deletion.save(update_fields=["token_hash"])
    tokens = _stop_account(user)
    audit_record(
        ctx=ctx,
        action="privacy.delete_request",
        user_id=user.pk,
        target_type="deletion",
        target_id=deletion.public_id,
        details={"tokens_revoked": tokens, "requested_by": by},
    )
    if send:
        pk = str(deletion.pk)
        transaction.on_commit(lambda: _send(pk))
    return Requested(deletion=deletion, receipt_token=token)


def _send(deletion_id: str) -> None:
    from privacy.erasure.tasks import erase_account

    try:
        erase_account.delay(deletion_id)
    except (KombuOperationalError, OSError):
        # The account is already stopped; `./cli user purge` (or the compliance
        # check's overdue erasure) finishes a deletion whose task was lost.
        logger.exception("erasure %s not sent: broker down", deletion_id)


def _claim(deletion_id: uuid.UUID) -> Deletion | None:
    """Mark the deletion running; None when it is gone or already succeeded. A
    running one is taken again (a redelivered task: every step is idempotent)."""
    claimed = Deletion.objects.filter(
        pk=deletion_id,
        status__in=[
            Deletion.State.QUEUED,
            Deletion.State.RUNNING,
            Deletion.State.FAILED,
        ],
    ).update(status=Deletion.State.RUNNING, started_at=timezone.now())
    return Deletion.objects.filter(pk=deletion_id).first() if claimed else None


def _subject(deletion: Deletion) -> Subject:
    """What the job must know before the rows go: the rate-limit keys (from the
    email) and the item ids (the embedding queue). A rerun after the user row
    went finds them where the first run kept them (receipt["subject"])."""
    from memory.models import MemoryItem

    known = deletion.receipt.get("subject", {})
    user = User.objects.filter(pk=deletion.user_id).first()
    rate_keys = set(known.get("rate_keys", []))
    if user is not None:
        rate_keys |= set(rate_keys_of(user.pk, user.email))
    ids = MemoryItem._base_manager.filter(user_id=deletion.user_id).values_list(
        "pk", flat=True
    )
    return Subject(
        user_id=deletion.user_id,
        rate_keys=sorted(rate_keys),
        item_ids=sorted({str(i) for i in ids} | set(known.get("item_ids", []))),
    )


def _erase(s: Subject) -> dict[str, Any]:
    """Delete the user from every store; what each step deleted."""
    redis = {k.prefix: k.erase(s) for k in _REDIS_FIRST if k.erase is not None}
    sql = stores.sql_erase(s)
    sessions = stores.sessions_erase(s)
    for prefix, n in stores.redis_erase(s).items():
        redis[prefix] = redis.get(prefix, 0) + n
    objects = stores.objects_erase(s)
    return {"sql": sql, "redis": redis, "sessions": sessions, "objects": objects}


def deletion_run(*, deletion_id: uuid.UUID | str, ctx: Context | None = None) -> None:
    """Run one erasure: delete, verify every store, keep the receipt, audit it.
    Returns quietly when the deletion is gone or already done."""
    deletion = _claim(uuid.UUID(str(deletion_id)))
    if deletion is None:
        return
    ctx = ctx or Context(Actor.system("privacy.erasure"))
    s = _subject(deletion)
    # Kept until the job succeeds, so a rerun after the user row went can still
    # find the rate-limit keys and queued ids (hashes and ids; never shown).
    subject = {"rate_keys": s.rate_keys, "item_ids": s.item_ids}
    Deletion.objects.filter(pk=deletion.pk).update(receipt={"subject": subject})
    deleted = _erase(s)
    entries = stores.receipt_entries(
        s,
        sql=deleted["sql"],
        redis=deleted["redis"],
        sessions=deleted["sessions"],
        objects=deleted["objects"],
    )
    _finish(ctx, deletion, entries, subject)


@transaction.atomic
def _finish(
    ctx: Context,
    deletion: Deletion,
    entries: list[stores.Entry],
    subject: dict[str, list[str]],
) -> None:
    left = [e for e in entries if e["verification"].get("found", 0)]
    now = timezone.now()
    deletion.status = Deletion.State.FAILED if left else Deletion.State.SUCCEEDED
    deletion.finished_at = now
    deletion.receipt = {
        "deletion_id": deletion.public_id,
        "user_id": str(deletion.user_id),
        "requested_at": deletion.requested_at.isoformat(),
        "finished_at": now.isoformat(),
        "verified": not left,
        "stores": entries,
    }
    if left:  # keep what a rerun needs to find the rest
        deletion.receipt["subject"] = subject
    deletion.save(update_fields=["status", "finished_at", "receipt"])
    audit_record(
        ctx=ctx,
        action="privacy.delete_done",
        user_id=deletion.user_id,
        target_type="deletion",
        target_id=deletion.public_id,
        details={
            "status": deletion.status,
            "deleted": sum(int(e.get("deleted", 0)) for e in entries),
            "stores_left": [f"{e['store']}:{e['name']}" for e in left],
        },
    )


def user_purge(*, ctx: Context, user: User) -> tuple[Deletion, str]:
    """Operators: request and run the erasure of `user` now (./cli user purge)."""
    requested = deletion_request(
        ctx=ctx, user=user, confirm=True, by="operator", send=False
    )
    deletion_run(deletion_id=requested.deletion.pk, ctx=ctx)
    requested.deletion.refresh_from_db()
    return requested.deletion, requested.receipt_token
