"""What the consent ledger (users.consents) means for stored memories.

Without `sensitive_memory` no sensitive item is stored (create and edit ask
`consents.require`). When it is withdrawn, the user's sensitive items are
hidden at once (`consent` False: no list, query, chat or agent sees them) and,
unless it is granted again first, purged CONSENT_PURGE_GRACE_HOURS later with
an audit event each; granted again in time, they come back.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from audit.services import audit_record
from kimberly.context import Actor, Context
from memory import short_term
from memory.models import MemoryItem
from memory.services.lifecycle import purge_locked
from users import consents
from users.models import Consent, User


def sensitive_consent_changed(ctx: Context, user: User, granted: bool) -> None:
    """Hide (withdrawn) or show again (granted) the user's sensitive items; in
    the transaction of the consent change."""
    n = MemoryItem.objects.filter(
        user=user, sensitive=True, consent=not granted
    ).update(consent=granted)
    # The session context in Redis may hold their text: rebuilt from PostgreSQL.
    user_id = user.pk
    transaction.on_commit(lambda: short_term.short_term_invalidate(user_id))
    if n:
        audit_record(
            ctx=ctx,
            action="memory.consent_restore" if granted else "memory.consent_hide",
            user_id=user.pk,
            target_type="memory",
            details={"items": n},
        )


def purge_withdrawn_sensitive() -> int:
    """Beat: delete the hidden sensitive items of users whose withdrawal of
    sensitive_memory is older than the grace period; returns how many."""
    cutoff = timezone.now() - timedelta(hours=settings.CONSENT_PURGE_GRACE_HOURS)
    purged = 0
    # Every user holding a sensitive item without a standing consent, whatever
    # the item's flag says (a write that raced the withdrawal).
    user_ids = (
        MemoryItem.objects.filter(sensitive=True)
        .exclude(
            Exists(
                Consent.objects.filter(
                    user=OuterRef("user"),
                    purpose=consents.Purpose.SENSITIVE_MEMORY,
                    withdrawn_at__isnull=True,
                )
            )
        )
        .values_list("user_id", flat=True)
        .distinct()
    )
    for user in User.objects.filter(pk__in=list(user_ids)):
        since = consents.withdrawn_since(user, consents.Purpose.SENSITIVE_MEMORY)
        if since is not None and since <= cutoff:
            purged += _purge(user, since)
    return purged


@transaction.atomic
def _purge(user: User, since: object) -> int:
    items = list(
        MemoryItem.objects.select_for_update()
        .filter(user=user, sensitive=True)
        .order_by("pk")
    )
    return purge_locked(
        Context(Actor.system("consent")), user, items, "consent_withdrawn"
    )
