"""Writes for memories: create, edit, lifecycle, delete, bulk, goals. Validate, then act.

Each write is one transaction that moves quota usage, the item, its version row
and its audit event together; the Redis short-term cache and metrics follow
after commit.

    create.py     new memories, at most once per Idempotency-Key
    create_many.py  many new memories in one batch (imports), duplicates skipped
    edit.py       content, metadata and tier changes; revert
    lifecycle.py  protect, unprotect, archive, restore, delete; bulk
    goals.py      the user's goals
    changes.py    how each change is recorded (version, audit, quota, cache)
"""

from memory.services.create import (
    CreateResult,
    idempotency_keys_purge,
    memory_create,
)
from memory.services.create_many import ManyResult, NewMemory, memory_create_many
from memory.services.edit import memory_revert, memory_update
from memory.services.goals import MAX_GOALS, goal_create, goal_delete
from memory.services.lifecycle import (
    BULK_ACTIONS,
    LIFECYCLE_ACTIONS,
    BulkResult,
    memory_bulk,
    memory_delete,
    memory_lifecycle,
)

__all__ = [
    "BULK_ACTIONS",
    "LIFECYCLE_ACTIONS",
    "MAX_GOALS",
    "BulkResult",
    "CreateResult",
    "ManyResult",
    "NewMemory",
    "goal_create",
    "goal_delete",
    "idempotency_keys_purge",
    "memory_bulk",
    "memory_create",
    "memory_create_many",
    "memory_delete",
    "memory_lifecycle",
    "memory_revert",
    "memory_update",
]
