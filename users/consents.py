"""The consent ledger: what a user agreed to, since when, and what they withdrew.

Reads (`has_consent`, `consents_of`) and writes (`consent_grant`,
`consent_withdraw`) of users.models.Consent. Every change is audited in the
user's chain. Other apps ask `has_consent` before they keep or share what a
purpose covers (memory: sensitive items; chat: sensitive items to a model;
agents: sensitive items to an agent); the consequences of a withdrawal for
stored memories (hide now, purge after a grace period) are memory's, which
registers for them with `on_withdraw`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.services import audit_record
from kimberly.api.errors import ApplicationError, NotFound
from kimberly.context import Context
from users.models import Consent, User

Purpose = Consent.Purpose
_listeners: dict[str, list[Callable[[Context, User, bool], None]]] = {}


class ConsentRequired(ApplicationError):
    code = "consent_required"
    status = 400


def require(user: User, purpose: str, what: str) -> None:
    """400 consent_required unless `purpose` is granted. Inside a transaction it
    holds the user row until commit, so a withdrawal (which takes the same
    lock) cannot slip between this check and the write that relies on it."""
    if transaction.get_connection().in_atomic_block:
        _lock(user)
    if not has_consent(user, purpose):
        raise ConsentRequired(
            f"{what} needs your consent to '{Purpose(purpose).value}' (POST /v1/user/consents).",
            details={"purpose": purpose},
        )


def _lock(user: User) -> None:
    """Hold the user's row until the transaction ends."""
    list(User.objects.select_for_update().filter(pk=user.pk).values_list("pk"))


def on_change(purpose: str, listener: Callable[[Context, User, bool], None]) -> None:
    """Call `listener(ctx, user, granted)` in the transaction of every grant or
    withdrawal of `purpose` (apps register in AppConfig.ready)."""
    _listeners.setdefault(purpose, []).append(listener)


def has_consent(user: User, purpose: str) -> bool:
    return Consent.objects.filter(
        user=user, purpose=purpose, withdrawn_at__isnull=True
    ).exists()


def purposes(value: str) -> str:
    """`value` if it names a purpose, else 404 unknown_purpose."""
    if value not in Purpose.values:
        raise NotFound(
            f"No consent purpose {value[:64]!r}.",
            code="unknown_purpose",
            details={"purposes": list(Purpose.values)},
        )
    return value


@dataclass(frozen=True)
class ConsentState:
    purpose: str
    granted: bool
    granted_at: datetime | None  # of the standing grant
    history: list[Consent]  # newest first


def consents_of(user: User) -> list[ConsentState]:
    """Every purpose with its standing grant (if any) and its history."""
    rows = list(Consent.objects.filter(user=user).order_by("-granted_at", "-pk"))
    out = []
    for purpose in Purpose.values:
        mine = [r for r in rows if r.purpose == purpose]
        standing = next((r for r in mine if r.withdrawn_at is None), None)
        out.append(
            ConsentState(
                purpose,
                standing is not None,
                standing.granted_at if standing else None,
                mine,
            )
        )
    return out


def withdrawn_since(user: User, purpose: str) -> datetime | None:
    """When the latest grant of `purpose` was withdrawn, if none stands now."""
    if has_consent(user, purpose):
        return None
    latest = (
        Consent.objects.filter(user=user, purpose=purpose)
        .order_by("-withdrawn_at")
        .values_list("withdrawn_at", flat=True)
        .first()
    )
    return latest


@transaction.atomic
def consent_grant(*, ctx: Context, user: User, purpose: str, source: str) -> bool:
    """Grant `purpose` (idempotent); True when it was not granted before."""
    purposes(purpose)
    _lock(user)  # see require
    try:
        with transaction.atomic():
            Consent.objects.create(user=user, purpose=purpose, source=source[:16])
    except IntegrityError:
        return False  # already standing
    _changed(ctx, user, purpose, granted=True, source=source)
    return True


@transaction.atomic
def consent_withdraw(*, ctx: Context, user: User, purpose: str, source: str) -> bool:
    """Withdraw `purpose` (idempotent); True when it was granted before."""
    purposes(purpose)
    _lock(user)  # see require
    n = Consent.objects.filter(
        user=user, purpose=purpose, withdrawn_at__isnull=True
    ).update(withdrawn_at=timezone.now(), withdrawn_source=source[:16])
    if not n:
        return False
    _changed(ctx, user, purpose, granted=False, source=source)
    return True


def _changed(
    ctx: Context, user: User, purpose: str, *, granted: bool, source: str
) -> None:
    audit_record(
        ctx=ctx,
        action="consent.grant" if granted else "consent.withdraw",
        user_id=user.pk,
        target_type="consent",
        target_id=purpose,
        details={"source": source[:16]},
    )
    if purpose == Purpose.TELEMETRY:  # the flag GET /v1/user shows follows it
        User.objects.filter(pk=user.pk).update(consent_telemetry=granted)
        user.consent_telemetry = granted
    for listener in _listeners.get(purpose, []):
        listener(ctx, user, granted)
