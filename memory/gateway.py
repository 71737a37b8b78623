"""The one door through which chat and agents read and write a user's memory.

Nothing outside `memory/` that acts for the user on its own (a chat reply, an
agent task) touches memory tables or services except through here, so every
such read and write is checked and recorded in one place:

- every call carries a `Grant` (permissions and tiers: an agent's come from its
  type, chat acts for the user); what it does not allow is 403
  `permission_denied` and a `memory.access_denied` audit event;
- reads never return archived items, other users' items, items whose consent
  was withdrawn, or sensitive items unless the user granted the reader's
  purpose (users.consents: model_context for chat, agent_access for agents);
- each memory read is an audit event (`memory.read`, with the reader's kind and
  reference: the assistant message id, or the agent and its task id, marked
  `preview` for a preview's reads) in the user's hash chain, and a
  read-provenance record (`GET /v1/memory/{id}/accesses`);
- writes are the ordinary quota-checked memory writes, made for the user and
  audited with the caller's actor. A preview checks a planned write with
  `authorize` and makes none (agents/runs.py keeps the plan).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from django.db import transaction

from audit.services import EventSpec, audit_record, audit_record_many
from kimberly.api.errors import ApplicationError
from kimberly.context import Actor, Context
from memory import sealing, services
from memory.attachments.models import ATTACHMENT_ID_PREFIX
from memory.constants import ID_PREFIX, Source, Status, Tier
from memory.models import MemoryItem, MemoryProposal
from memory.retrieval import MAX_QUERY_CHARS, QueryFilters, memory_query, prefiltered
from memory.retrieval.provenance import log_retrieval
from memory.services.proposals import proposals_create, proposals_withdraw
from users import consents
from users.models import User

# The latest session entries always offered as context, matching or not: they
# are what the user was just talking about.
SESSION_ENTRIES = 3


@dataclass(frozen=True)
class Grant:
    """What a caller may do through the gateway: permissions (`memory.read`,
    `memory.write`) and the tiers its reads and writes may touch. An agent's
    grant comes from its type (agents/registry.py); chat acts for the user."""

    permissions: frozenset[str]
    tiers: tuple[str, ...]
    # The consent that lets this caller read sensitive items (users.consents):
    # model_context for chat (they go to a model), agent_access for agents.
    sensitive_purpose: str = consents.Purpose.AGENT_ACCESS

    def may_read_sensitive(self, user: User) -> bool:
        return consents.has_consent(user, self.sensitive_purpose)


CHAT_GRANT = Grant(
    frozenset({"memory.read", "memory.write"}),
    tuple(Tier.values),
    sensitive_purpose=consents.Purpose.MODEL_CONTEXT,
)


class PermissionDenied(ApplicationError):
    code = "permission_denied"
    status = 403


def authorize(
    *, ctx: Context, user: User, grant: Grant, permission: str, tier: str | None
) -> None:
    """Refuse (403, audited) what `grant` does not allow; a preview checks its
    planned writes here without making them."""
    if permission in grant.permissions and (tier is None or tier in grant.tiers):
        return
    what = permission if tier is None else f"{permission} on {tier}"
    with transaction.atomic():
        audit_record(
            ctx=ctx,
            action="memory.access_denied",
            user_id=user.pk,
            target_type="memory",
            details={"permission": permission, "tier": tier or ""},
        )
    raise PermissionDenied(
        f"Not allowed: {what}.", details={"permission": permission, "tier": tier}
    )


@dataclass(frozen=True)
class Reader:
    """Who reads memory and for what: the reference is where the read went."""

    kind: Literal["chat", "agent"]
    ref: str  # "msg_<uuid>" of the assistant reply, or an agent task id
    agent: str = ""  # the agent type, for an agent's reads
    preview: bool = False  # read while previewing a task (nothing was applied)

    def details(self, rank: int) -> dict[str, object]:
        out: dict[str, object] = {"reader": self.kind, "ref": self.ref, "rank": rank}
        if self.agent:
            out["agent"] = self.agent
        if self.preview:
            out["preview"] = True
        return out


@dataclass(frozen=True)
class Recalled:
    """One memory offered as context, with why it was chosen."""

    item_id: uuid.UUID
    tier: str
    content: str
    created_at: datetime
    version: int
    score: float
    relevance: float
    final: float
    why: str
    attachment_id: str | None = None  # "att_<uuid>" when a document's chunk
    attachment_offset: int | None = None  # where the chunk starts in its text

    @property
    def memory_id(self) -> str:
        return f"{ID_PREFIX}{self.item_id}"


def _recalled(item: MemoryItem, relevance: float, final: float, why: str) -> Recalled:
    return Recalled(
        item_id=item.pk,
        tier=item.tier,
        content=item.content,
        created_at=item.created_at,
        version=item.version,
        score=item.score,
        relevance=round(relevance, 6),
        final=round(final, 6),
        why=why,
        attachment_id=(
            f"{ATTACHMENT_ID_PREFIX}{item.attachment_id}"
            if item.attachment_id
            else None
        ),
        attachment_offset=item.attachment_offset,
    )


def recall(
    *,
    user: User,
    query: str,
    limit: int,
    ctx: Context | None = None,
    grant: Grant = CHAT_GRANT,
) -> list[Recalled]:
    """The user's memories for `query`, best first: one hybrid retrieval, then the
    latest session entries not already chosen; never archived, sensitive only
    with the grant's consent (model_context, agent_access), only of the tiers
    `grant` allows (403 without `memory.read`)."""
    if "memory.read" not in grant.permissions:
        authorize(
            ctx=ctx or Context(Actor.system("gateway")),
            user=user,
            grant=grant,
            permission="memory.read",
            tier=None,
        )
    # One allowed tier is a pre-filter; several are filtered after ranking.
    tier = grant.tiers[0] if len(grant.tiers) == 1 else "any"
    filters = QueryFilters(include_sensitive=grant.may_read_sensitive(user))
    return [
        r for r in _recall(user, query, limit, tier, filters) if r.tier in grant.tiers
    ]


def _recall(
    user: User, query: str, limit: int, tier: str, filters: QueryFilters
) -> list[Recalled]:
    result = memory_query(
        user=user,
        tier=tier,
        query=query[:MAX_QUERY_CHARS],
        top_k=limit,
        filters=filters,
        log=False,  # what is used is recorded by record_reads, once
    )
    ranked = [_recalled(h.item, h.relevance, h.final, h.why) for h in result.hits]
    # The session entries the query already read from Redis (none for a grant
    # without short-term memory).
    session_ids = result.session_ids[:SESSION_ENTRIES]
    missing = [i for i in session_ids if i not in {r.item_id for r in ranked}]
    if missing:
        # Re-read from PostgreSQL through the pre-filter: Redis may be stale, and
        # a sensitive or archived item must not slip in through the session.
        rows = prefiltered(user, Tier.SHORT_TERM, filters).in_bulk(missing)
        ranked += [
            _recalled(rows[i], 0.0, 0.0, "in your current session")
            for i in missing
            if i in rows
        ]
    return ranked


@transaction.atomic(savepoint=False)
def record_reads(
    *, ctx: Context, user: User, reader: Reader, used: list[Recalled]
) -> None:
    """Record that `used` went to `reader`: audit events, in the caller's
    transaction, and read provenance once it commits."""
    if not used:
        return
    audit_record_many(
        ctx=ctx,
        user_id=user.pk,
        events=[
            EventSpec("memory.read", "memory", r.memory_id, reader.details(rank))
            for rank, r in enumerate(used, 1)
        ],
    )
    user_id = user.pk
    entries = [(r.item_id, r.final) for r in used]
    transaction.on_commit(
        lambda: log_retrieval(
            user_id, reader.ref, entries, kind=reader.kind, counted=not reader.preview
        )
    )


def content_digest(content: str) -> str:
    """What identifies a memory's content in provenance (never the text itself)."""
    return hashlib.sha256(content.encode()).hexdigest()


@dataclass(frozen=True)
class MemoryState:
    status: str  # active | archived | hidden (consent withdrawn) | deleted
    digest: str | None  # content_digest of its content now; None when deleted
    sensitive: bool = False
    sensitive_ok: bool = False  # the reader's consent covers sensitive items

    @property
    def shareable(self) -> bool:
        """May still go where it went: active, visible, and not sensitive unless
        the reader's consent covers it."""
        return self.status == Status.ACTIVE and (
            not self.sensitive or self.sensitive_ok
        )


def memory_states(
    *, user: User, item_ids: list[uuid.UUID], grant: Grant = CHAT_GRANT
) -> dict[uuid.UUID, MemoryState]:
    """Where each of the user's memories stands now for `grant`'s reader
    (deleted when gone; hidden when its consent was withdrawn)."""
    sensitive_ok = grant.may_read_sensitive(user)
    rows = {
        pk: MemoryState(
            status if consent else "hidden",
            content_digest(sealing.opened(user.pk, blob) if blob else content),
            sensitive,
            sensitive_ok,
        )
        for pk, status, content, blob, sensitive, consent in MemoryItem.objects.filter(
            user=user, pk__in=item_ids
        ).values_list("pk", "status", "content", "sealed", "sensitive", "consent")
    }
    return {i: rows.get(i, MemoryState("deleted", None)) for i in item_ids}


def remember(
    *,
    ctx: Context,
    user: User,
    content: str,
    tags: list[str],
    grant: Grant = CHAT_GRANT,
    source: str = Source.CHAT,
) -> MemoryItem:
    """Store `content` in the user's short-term memory (quota-checked; 403 when
    `grant` may not write short-term memory). An agent's write is audited with
    its ctx, whose actor names the agent and the task."""
    authorize(
        ctx=ctx, user=user, grant=grant, permission="memory.write", tier=Tier.SHORT_TERM
    )
    return services.memory_create(
        ctx=ctx,
        user=user,
        tier=Tier.SHORT_TERM,
        content=content,
        metadata={"source": source, "tags": tags},
    ).item


def propose(
    *, ctx: Context, user: User, facts: list[str], origin: str
) -> list[MemoryProposal]:
    """Offer `facts` as memories for the user to accept or reject (or store them at
    once when the user turned auto-accept on)."""
    return proposals_create(ctx=ctx, user=user, facts=facts, origin=origin)


def withdraw_proposals(*, ctx: Context, user: User, origins: list[str]) -> int:
    """Drop the pending proposals that came from `origins` (e.g. the replies of a
    deleted conversation); decided ones stay as they are."""
    return proposals_withdraw(ctx=ctx, user=user, origins=origins)


__all__ = [
    "CHAT_GRANT",
    "Grant",
    "MemoryState",
    "PermissionDenied",
    "Reader",
    "Recalled",
    "Source",
    "Status",
    "Tier",
    "authorize",
    "content_digest",
    "memory_states",
    "propose",
    "recall",
    "record_reads",
    "remember",
    "withdraw_proposals",
]
