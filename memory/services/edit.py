"""Editing a memory's content, metadata or tier, and reverting to an earlier version."""

from __future__ import annotations

from collections import defaultdict
from typing import cast

from django.db import transaction
from django.utils import timezone

from kimberly.api.errors import NotFound, invalid_field
from kimberly.context import Context
from memory import indexing, metrics, sealing
from memory.constants import (
    Status,
    Tier,
)
from memory.metadata import (
    METADATA_KEYS,
    MetadataPatch,
    apply_metadata,
    item_size,
    metadata_of,
    validate_content,
    validate_metadata,
    validate_tier,
)
from memory.models import MemoryItem
from memory.quotas import QuotaExceeded
from memory.selectors import vector_allowed
from memory.sentiment import sentiment_strength
from memory.services.changes import (
    adjust_quotas,
    after_commit_sync,
    locked_item,
    record_change,
    version_row,
)
from users import consents
from users.models import User


def _move_usage(user: User, old: tuple[str, int], new: tuple[str, int]) -> None:
    """Release the item's old (tier, size) and reserve its new one, or raise 429."""
    deltas: dict[str, int] = defaultdict(int)
    deltas[old[0]] -= old[1]
    deltas[new[0]] += new[1]
    try:
        adjust_quotas(user.pk, deltas)
    except QuotaExceeded:
        metrics.memory_writes.labels(tier=new[0], result="quota_exceeded").inc()
        raise


@transaction.atomic
def memory_update(
    *,
    ctx: Context,
    user: User,
    memory_id: str,
    content: str | None = None,
    metadata: MetadataPatch | None = None,
    tier: str | None = None,
    action: str = "update",
) -> MemoryItem:
    """Edit content, metadata and/or tier; quota-checked, versioned, audited."""
    new_tier = validate_tier(tier) if tier is not None else None
    new_content = validate_content(content) if content is not None else None
    item = locked_item(user, memory_id)
    old_meta = metadata_of(item)
    new_meta = (
        validate_metadata(metadata, base=old_meta) if metadata is not None else old_meta
    )
    if new_meta["sensitive"] and not old_meta["sensitive"]:
        consents.require(user, consents.Purpose.SENSITIVE_MEMORY, "A sensitive memory")
    changed = []
    if new_content is not None and new_content != item.content:
        changed.append("content")
    if new_meta != old_meta:
        changed.append("metadata")
    if new_tier is not None and new_tier != item.tier:
        changed.append("tier")
    if not changed:
        return item
    previous = version_row(item, action, ctx)
    old_tier, old_size = item.tier, item.size_bytes
    target_tier = new_tier or old_tier
    new_size = item_size(
        new_content if new_content is not None else item.content, new_meta
    )
    if item.status == Status.ACTIVE:
        _move_usage(user, (old_tier, old_size), (target_tier, new_size))
    if new_content is not None:
        item.content = new_content
        item.sentiment = sentiment_strength(new_content)
    apply_metadata(item, new_meta)
    if "content" in changed or not vector_allowed(user, item):
        indexing.memory_drop_vectors(items=[item])
    # A sensitive item stands on the user's consent; any other needs none.
    item.consent = not new_meta["sensitive"] or consents.has_consent(
        user, consents.Purpose.SENSITIVE_MEMORY
    )
    item.tier = target_tier
    item.size_bytes = new_size
    item.version += 1
    item.updated_at = timezone.now()
    record_change(
        ctx,
        user,
        item,
        previous,
        action,
        {
            "changed": changed,
            "tier": [old_tier, target_tier],
            "size_bytes": [old_size, new_size],
            "version": item.version,
        },
    )
    after_commit_sync([item], was_short_term=old_tier == Tier.SHORT_TERM)
    if "content" in changed or item.sensitive != old_meta["sensitive"]:
        indexing.enqueue_on_commit([item], user)
    metrics.memory_writes.labels(tier=target_tier, result="ok").inc()
    return item


@transaction.atomic
def memory_revert(
    *, ctx: Context, user: User, memory_id: str, version: int
) -> MemoryItem:
    """Bring back the content, metadata and tier an item had at `version`.

    A revert is itself an edit: quota-checked, kept in history (so it can be
    reverted too) and audited as memory.revert. Status and protection stay.
    """
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise invalid_field("version", "must be a positive integer")
    item = locked_item(user, memory_id)
    snapshot = next(
        iter(
            sealing.open_versions(item.user_id, item.versions.filter(version=version))
        ),
        None,
    )
    if snapshot is None:
        raise NotFound(
            f"{memory_id} has no earlier version {version}.",
            details={"version": version, "current": item.version},
        )
    return memory_update(
        ctx=ctx,
        user=user,
        memory_id=memory_id,
        content=snapshot.content,
        metadata=cast(
            MetadataPatch,
            {k: v for k, v in snapshot.metadata.items() if k in METADATA_KEYS},
        ),
        tier=snapshot.tier,
        action="revert",
    )
