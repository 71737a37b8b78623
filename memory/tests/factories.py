"""Memory test data, made through memory.services so quotas, history and audit agree.

A model factory would write rows behind the quota accounting's back; every helper
here goes through the same service the API uses.
"""

from __future__ import annotations

from django.db.models import Sum

from kimberly.context import Actor, Context
from memory.constants import Status, Tier
from memory.metadata import MetadataPatch
from memory.models import MemoryItem, Quota
from memory.services import memory_create, memory_lifecycle
from tests.log_canary import CANARY
from users import consents
from users.models import User

# Carries the canary no log line may show (tests/log_canary.py).
DEFAULT_CONTENT = f"Alice takes her tea with lemon ({CANARY})"


def ctx_for(user: User) -> Context:
    """The user acting on their own memories (as the API would)."""
    return Context(Actor("user", str(user.pk)))


def memory_for(
    user: User,
    content: str = DEFAULT_CONTENT,
    *,
    tier: str = Tier.LONG_TERM,
    metadata: MetadataPatch | None = None,
    archived: bool = False,
    protected: bool = False,
) -> MemoryItem:
    """Store one memory of `user` through the create service (quota-checked); a
    sensitive one with the user's consent to keep it (granted here)."""
    if (metadata or {}).get("sensitive"):
        grant(user, consents.Purpose.SENSITIVE_MEMORY)
    item = memory_create(
        ctx=ctx_for(user), user=user, tier=tier, content=content, metadata=metadata
    ).item
    if protected:
        item = memory_lifecycle(
            ctx=ctx_for(user), user=user, memory_id=item.public_id, action="protect"
        )
    if archived:
        item = memory_lifecycle(
            ctx=ctx_for(user), user=user, memory_id=item.public_id, action="archive"
        )
    return item


def grant(user: User, *purposes: str) -> None:
    """The user consents to `purposes` (as through POST /v1/user/consents)."""
    for purpose in purposes:
        consents.consent_grant(
            ctx=ctx_for(user), user=user, purpose=purpose, source="api"
        )


def used_bytes(user: User) -> dict[str, int]:
    """Quota usage per tier as the quota rows record it (0 where no row exists)."""
    rows = dict(Quota.objects.filter(user=user).values_list("tier", "used_bytes"))
    return {tier: int(rows.get(tier, 0)) for tier in Tier.values}


def stored_bytes(user: User) -> dict[str, int]:
    """The bytes the user's active items really take, per tier."""
    out = dict.fromkeys(Tier.values, 0)
    for row in (
        MemoryItem.objects.filter(user=user, status=Status.ACTIVE)
        .values("tier")
        .annotate(total=Sum("size_bytes"))
        .order_by()
    ):
        out[row["tier"]] = int(row["total"])
    return out


def assert_usage_is_exact(user: User) -> None:
    """Quota usage equals what the user's active items take, in every tier."""
    assert used_bytes(user) == stored_bytes(user)
