"""What the chat screen shows of a turn, of the memories a reply used (its
context rail) and of a proposed memory: plain values, computed once."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from chat.models import Message
from chat.selectors import UsedMemory
from memory.constants import ID_PREFIX, ProposalStatus
from memory.models import MemoryItem, MemoryProposal
from web.presenters import preview

# Where a memory that a reply used stands now, in words.
STATUS_WORDS = {
    "active": "",
    "archived": "Archived",
    "hidden": "Hidden (consent withdrawn)",
    "deleted": "Deleted",
}


@dataclass(frozen=True)
class RailEntry:
    """A memory that went into a reply: why, its score then, and where it is now."""

    message_id: str
    memory_id: str
    rank: int
    tier: str
    why: str
    score: float
    relevance: float
    status: str  # active | archived | hidden | deleted
    edited: bool
    protected: bool
    preview: str  # "" when it can no longer be shown (hidden, deleted)

    @property
    def key(self) -> str:
        """A DOM id part unique on the page (one memory may serve many replies)."""
        return f"{self.message_id}-{self.rank}"

    @property
    def archived(self) -> bool:
        return self.status == "archived"

    @property
    def actionable(self) -> bool:
        return self.status in ("active", "archived")

    @property
    def status_words(self) -> str:
        return STATUS_WORDS.get(self.status, self.status)


def rail_entries(
    message: Message, used: list[UsedMemory], items: dict[uuid.UUID, MemoryItem]
) -> list[RailEntry]:
    out = []
    for u in used:
        item = items.get(u.used.memory_id)
        out.append(
            RailEntry(
                message_id=message.public_id,
                memory_id=f"{ID_PREFIX}{u.used.memory_id}",
                rank=u.used.rank,
                tier=u.used.tier,
                why=u.used.why,
                score=u.used.score,
                relevance=u.used.relevance,
                status=u.status,
                edited=u.edited,
                protected=bool(item and item.protected),
                preview=preview(item.content) if item is not None else "",
            )
        )
    return out


@dataclass(frozen=True)
class TurnRow:
    id: str
    role: str
    content: str
    created_at: datetime
    runner: str = ""
    saved_memory_id: str | None = None  # the user's message kept as a memory
    rail: list[RailEntry] = field(default_factory=list)

    @property
    def is_reply(self) -> bool:
        return self.role == Message.Role.ASSISTANT

    @property
    def offline(self) -> bool:
        return self.runner == "offline"


def turn_row(message: Message, rail: list[RailEntry] | None = None) -> TurnRow:
    return TurnRow(
        id=message.public_id,
        role=message.role,
        content=message.content,
        created_at=message.created_at,
        runner=message.runner,
        saved_memory_id=(
            f"{ID_PREFIX}{message.memory_id}" if message.memory_id else None
        ),
        rail=rail or [],
    )


@dataclass(frozen=True)
class ProposalRow:
    id: str
    content: str
    tier: str
    status: str
    memory_id: str | None
    created_at: datetime

    @property
    def pending(self) -> bool:
        return self.status == ProposalStatus.PENDING


def proposal_row(p: MemoryProposal) -> ProposalRow:
    return ProposalRow(
        id=p.public_id,
        content=p.content,
        tier=p.tier,
        status=p.status,
        memory_id=f"{ID_PREFIX}{p.memory_id}" if p.memory_id else None,
        created_at=p.created_at,
    )
