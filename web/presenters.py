"""What the templates show of a memory and of a quota: plain values, computed once.

The memory's fields are read from the item the selectors returned (never from
SQL of our own), here only: when content storage changes, this is the one
place of the UI that reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from memory.models import MemoryItem, MemoryVersion
from memory.quotas import TierUsage

PREVIEW_CHARS = 160
# A quota bar turns amber at 80% of the tier's quota and red at 90%.
WARN_AT = 0.8
DANGER_AT = 0.9


@dataclass(frozen=True)
class MemoryRow:
    id: str
    content: str
    preview: str
    tier: str
    score: float
    tags: list[str]
    status: str
    protected: bool
    sensitive: bool
    created_at: datetime
    last_seen_at: datetime | None
    version: int
    relevance: float | None = None
    why: str = ""

    @property
    def archived(self) -> bool:
        return self.status == "archived"


def preview(text: str, limit: int = PREVIEW_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def memory_row(
    item: MemoryItem, *, relevance: float | None = None, why: str = ""
) -> MemoryRow:
    content = item.content
    return MemoryRow(
        id=item.public_id,
        content=content,
        preview=preview(content),
        tier=item.tier,
        score=item.score,
        tags=list(item.tags),
        status=item.status,
        protected=item.protected,
        sensitive=item.sensitive,
        created_at=item.created_at,
        last_seen_at=item.last_seen_at,
        version=item.version,
        relevance=relevance,
        why=why,
    )


@dataclass(frozen=True)
class VersionRow:
    version: int
    action: str
    actor: str
    changed_at: datetime
    tier: str
    preview: str


def version_row(version: MemoryVersion) -> VersionRow:
    return VersionRow(
        version=version.version,
        action=version.action,
        actor=f"{version.actor_type}",
        changed_at=version.changed_at,
        tier=version.tier,
        preview=preview(version.content),
    )


@dataclass(frozen=True)
class QuotaBar:
    tier: str
    used: int
    soft: int
    hard: int
    active_items: int
    archived_items: int

    @property
    def ratio(self) -> float:
        """Usage as a share of the soft quota (above 1 while bursting)."""
        return self.used / self.soft if self.soft else 1.0

    @property
    def percent(self) -> int:
        return round(self.ratio * 100)

    @property
    def level(self) -> str:
        if self.ratio >= DANGER_AT:
            return "danger"
        return "warn" if self.ratio >= WARN_AT else "ok"


def quota_bars(tiers: list[TierUsage]) -> list[QuotaBar]:
    return [
        QuotaBar(
            tier=t.tier,
            used=t.used_bytes,
            soft=t.quota_bytes,
            hard=t.hard_limit_bytes,
            active_items=t.active_items,
            archived_items=t.archived_items,
        )
        for t in tiers
    ]
