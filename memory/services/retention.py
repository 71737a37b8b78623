"""The retention policy of short-term memories: those made before a cutoff go
(protected ones stay: protecting is the user's explicit "keep this")."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db import transaction
from django.db.models import QuerySet

from kimberly.context import Context
from memory.constants import Tier
from memory.models import MemoryItem
from memory.services.lifecycle import purge_locked
from users.models import User

BATCH = 500


def _due(cutoff: datetime) -> QuerySet[MemoryItem]:
    return MemoryItem.objects.filter(
        tier=Tier.SHORT_TERM, protected=False, created_at__lt=cutoff
    )


def short_term_prune(
    *, ctx: Context, cutoff: datetime, user_id: uuid.UUID | None = None
) -> int:
    """Purge the unprotected short-term memories made before `cutoff` (of one
    user, or everyone's), a batch per transaction; returns how many."""
    due = _due(cutoff)
    if user_id is not None:
        due = due.filter(user_id=user_id)
    user_ids = list(due.order_by().values_list("user_id", flat=True).distinct())
    purged = 0
    for user in User.objects.filter(pk__in=user_ids).order_by("pk"):
        while n := _prune_batch(ctx, user, cutoff):
            purged += n
    return purged


@transaction.atomic
def _prune_batch(ctx: Context, user: User, cutoff: datetime) -> int:
    items = list(
        _due(cutoff)
        .filter(user=user)
        .select_for_update(skip_locked=True)
        .order_by("pk")[:BATCH]
    )
    return purge_locked(ctx, user, items, "retention")
