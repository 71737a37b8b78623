"""Protect, unprotect, archive, restore and delete, one item or in bulk."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from audit.services import EventSpec, audit_record, audit_record_many
from kimberly.api.errors import NotFound, invalid_field
from kimberly.context import Context
from memory import short_term
from memory.constants import (
    MAX_BULK_IDS,
    Status,
)
from memory.models import MemoryItem, MemoryVersion
from memory.selectors import parse_memory_id
from memory.services.changes import (
    adjust_quotas,
    after_commit_sync,
    locked_item,
    record_change,
    version_row,
)
from users.models import User

LIFECYCLE_ACTIONS = ("protect", "unprotect", "archive", "restore")


def _transition(item: MemoryItem, action: str, deltas: dict[str, int]) -> bool:
    """Apply a lifecycle action in memory; record quota moves; False if a no-op."""
    if action == "protect":
        if item.protected:
            return False
        item.protected = True
    elif action == "unprotect":
        if not item.protected:
            return False
        item.protected = False
    elif action == "archive":
        if item.status == Status.ARCHIVED:
            return False
        item.status, item.archived_at = Status.ARCHIVED, timezone.now()
        deltas[item.tier] -= item.size_bytes
    elif action == "restore":
        if item.status == Status.ACTIVE:
            return False
        item.status, item.archived_at = Status.ACTIVE, None
        deltas[item.tier] += item.size_bytes
    else:  # pragma: no cover - callers validate the action
        raise ValueError(action)
    item.version += 1
    item.updated_at = timezone.now()
    return True


@transaction.atomic
def memory_lifecycle(
    *, ctx: Context, user: User, memory_id: str, action: str
) -> MemoryItem:
    """protect | unprotect | archive | restore one item; repeating one is a no-op."""
    item = locked_item(user, memory_id)
    previous = version_row(item, action, ctx)
    deltas: dict[str, int] = defaultdict(int)
    if not _transition(item, action, deltas):
        return item
    adjust_quotas(user.pk, deltas)
    record_change(
        ctx, user, item, previous, action, {"tier": item.tier, "version": item.version}
    )
    after_commit_sync([item])
    return item


@transaction.atomic
def memory_delete(*, ctx: Context, user: User, memory_id: str) -> None:
    """Delete an item and its history; its bytes leave the quota; an audit tombstone stays."""
    item = locked_item(user, memory_id)
    delete_locked(ctx, user, [item])
    audit_record(
        ctx=ctx,
        action="memory.delete",
        user_id=user.pk,
        target_type="memory",
        target_id=item.public_id,
        details={"tier": item.tier, "size_bytes": item.size_bytes},
    )


def delete_locked(ctx: Context, user: User, items: list[MemoryItem]) -> None:
    """Delete `items` (locked by the caller) and their history; the quota gives
    their bytes back and the session forgets them. The caller audits."""
    deltas: dict[str, int] = defaultdict(int)
    for item in items:
        if item.status == Status.ACTIVE:
            deltas[item.tier] -= item.size_bytes
    adjust_quotas(user.pk, deltas)
    ids = [i.id for i in items]
    MemoryItem.objects.filter(pk__in=ids, user=user).delete()
    transaction.on_commit(lambda: short_term.short_term_forget(user.pk, ids))


def purge_locked(ctx: Context, user: User, items: list[MemoryItem], reason: str) -> int:
    """Delete `items` (locked by the caller) as a policy did, not the user: one
    `memory.purge` audit event each, with the reason (consent_withdrawn,
    retention)."""
    if not items:
        return 0
    delete_locked(ctx, user, items)
    audit_record_many(
        ctx=ctx,
        user_id=user.pk,
        events=[
            EventSpec(
                "memory.purge",
                "memory",
                item.public_id,
                {"reason": reason, "tier": item.tier},
            )
            for item in items
        ],
    )
    return len(items)


BULK_ACTIONS = ("archive", "restore", "protect", "unprotect", "delete", "export")


@dataclass(frozen=True)
class BulkResult:
    action: str
    changed: int
    items: list[MemoryItem]


@transaction.atomic
def memory_bulk(
    *, ctx: Context, user: User, action: str, ids: Sequence[str]
) -> BulkResult:
    """Apply one action to up to 500 of the user's items: all of them, or none (4xx)."""
    if action not in BULK_ACTIONS:
        raise invalid_field("action", f"must be one of {', '.join(BULK_ACTIONS)}")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise invalid_field("ids", "must be a non-empty list of memory ids")
    if len(ids) > MAX_BULK_IDS:
        raise invalid_field("ids", f"at most {MAX_BULK_IDS} ids")
    wanted: dict[uuid.UUID, str] = {}
    missing: list[str] = []
    for raw in ids:
        try:
            wanted[parse_memory_id(raw)] = raw
        except NotFound:
            missing.append(raw)
    # Lock in primary-key order so concurrent bulk requests cannot deadlock.
    # A sensitive item hidden by a withdrawn consent is seen by no list, query
    # or export any more: only deleting it (its purge, sooner) reaches it.
    mine = MemoryItem.objects.filter(user=user, pk__in=list(wanted))
    if action != "delete":
        mine = mine.filter(consent=True)
    items = list(mine.select_for_update().order_by("pk"))
    found = {i.pk for i in items}
    missing += [raw for pk, raw in wanted.items() if pk not in found]
    if missing:
        raise NotFound(
            f"{len(missing)} of the ids are not memories of yours; nothing was changed.",
            details={"missing": missing[:50]},
        )
    changed: list[MemoryItem] = []
    if action == "delete":
        delete_locked(ctx, user, items)
        changed = items
    elif action in LIFECYCLE_ACTIONS:
        deltas: dict[str, int] = defaultdict(int)
        previous = {i.pk: version_row(i, action, ctx) for i in items}
        changed = [i for i in items if _transition(i, action, deltas)]
        adjust_quotas(user.pk, deltas)
        MemoryItem.objects.bulk_update(
            changed, ["protected", "status", "archived_at", "version", "updated_at"]
        )
        MemoryVersion.objects.bulk_create([previous[i.pk] for i in changed])
        after_commit_sync(changed)
    audit_record(
        ctx=ctx,
        action="memory.bulk",
        user_id=user.pk,
        target_type="memory",
        target_id="",
        details={
            "action": action,
            "requested": len(items),
            "changed": len(changed),
            "ids": [i.public_id for i in items],
        },
    )
    return BulkResult(action=action, changed=len(changed), items=items)
