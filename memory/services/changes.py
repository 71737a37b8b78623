"""How every change of an item is recorded: its previous version, the audit event, quota deltas, the short-term cache."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.services import audit_record
from kimberly.api.errors import NotFound
from kimberly.context import Context
from memory import sealing, short_term
from memory.constants import (
    Tier,
)
from memory.metadata import metadata_of
from memory.models import MemoryItem, MemoryVersion
from memory.quotas import quota_adjust
from memory.selectors import parse_memory_id
from users.models import User


def version_row(item: MemoryItem, action: str, ctx: Context) -> MemoryVersion:
    """Snapshot the item as it is *before* `action` changes it (call before mutating)."""
    content, sealed = sealing.stored(item.user_id, item.content, item.sensitive)
    return MemoryVersion(
        item=item,
        version=item.version,
        action=action,
        actor_type=ctx.actor.type,
        actor_id=ctx.actor.id[:64],
        changed_at=timezone.now(),
        tier=item.tier,
        status=item.status,
        protected=item.protected,
        content=content,
        sealed=sealed,
        metadata={**metadata_of(item), "version": item.version},
    )


def seal_versions(item: MemoryItem) -> int:
    """Seal the item's versions still held in plain text (it became sealed)."""
    plain = list(item.versions.filter(sealed__isnull=True))
    for v in plain:
        v.content, v.sealed = sealing.stored(item.user_id, v.content, True)
    MemoryVersion.objects.bulk_update(plain, ["content", "sealed"])
    return len(plain)


def after_commit_sync(items: list[MemoryItem], *, was_short_term: bool = False) -> None:
    # Items in the short-term tier, and those that just left it, reach the cache.
    touched = [i for i in items if was_short_term or i.tier == Tier.SHORT_TERM]
    if touched:
        transaction.on_commit(lambda: short_term.short_term_sync(touched))


def record_change(
    ctx: Context,
    user: User,
    item: MemoryItem,
    previous: MemoryVersion,
    action: str,
    details: dict[str, Any],
) -> None:
    """Save the changed item, its previous state and the audit event, together."""
    item.save()
    previous.save(force_insert=True)
    if item.sealed is not None:  # sealed now: so is every earlier state of it
        seal_versions(item)
    audit_record(
        ctx=ctx,
        action=f"memory.{action}",
        user_id=user.pk,
        target_type="memory",
        target_id=item.public_id,
        details=details,
    )


def locked_item(user: User, memory_id: str) -> MemoryItem:
    pk = parse_memory_id(memory_id)
    try:
        return MemoryItem.objects.select_for_update().get(pk=pk, user=user)
    except MemoryItem.DoesNotExist:
        raise NotFound(f"No memory {memory_id}.") from None


def adjust_quotas(user_id: uuid.UUID, deltas: dict[str, int]) -> None:
    # Fixed tier order: two transactions moving bytes between the same tiers in
    # opposite directions would otherwise deadlock on the quota rows. Releases
    # before reservations within a tier are folded into one delta.
    for tier in sorted(deltas):
        if deltas[tier]:
            quota_adjust(user_id=user_id, tier=tier, delta=deltas[tier])
