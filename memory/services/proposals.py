"""Memories Kimberly proposes: offered to the user, stored only when accepted."""

from __future__ import annotations

import logging
import uuid

from django.db import transaction
from django.db.models.functions import Lower, Trim
from django.utils import timezone

from audit.services import EventSpec, audit_record, audit_record_many
from kimberly.api.errors import Conflict, NotFound
from kimberly.context import Actor, Context
from memory.constants import ProposalStatus, Source, Status
from memory.metadata import validate_content
from memory.models import MemoryItem, MemoryProposal
from memory.quotas import QuotaExceeded
from memory.services.create import memory_create
from users.models import User

logger = logging.getLogger(__name__)

PROPOSAL_PREFIX = "prop_"
MAX_PROPOSAL_CHARS = 500


def _known(user: User, texts: list[str]) -> set[str]:
    """Which of `texts` (lower-cased) the user already has, as a memory or a
    pending proposal."""
    items = MemoryItem.objects.filter(user=user, status=Status.ACTIVE)
    pending = MemoryProposal.objects.filter(user=user, status=ProposalStatus.PENDING)
    known: set[str] = set()
    for qs in (items, pending):
        known.update(
            qs.annotate(norm=Lower(Trim("content")))
            .filter(norm__in=texts)
            .values_list("norm", flat=True)
        )
    # A sealed item's row holds no text to compare in SQL: opened here.
    wanted = set(texts)
    for item in items.filter(sealed__isnull=False).only("user_id", "content", "sealed"):
        if item.content.strip().lower() in wanted:
            known.add(item.content.strip().lower())
    return known


def proposals_create(
    *, ctx: Context, user: User, facts: list[str], origin: str
) -> list[MemoryProposal]:
    """Pending proposals for the facts the user does not have yet (a repeat of a
    memory or of a pending proposal is dropped); accepted at once under the
    user's auto-accept setting, as far as the quota allows."""
    fresh: dict[str, str] = {}
    for fact in facts:
        text = " ".join(fact.split())[:MAX_PROPOSAL_CHARS]
        if text:
            fresh.setdefault(text.lower(), text)
    for norm in _known(user, list(fresh)):
        fresh.pop(norm, None)
    if not fresh:
        return []
    with transaction.atomic():
        proposals = MemoryProposal.objects.bulk_create(
            [
                MemoryProposal(user=user, content=text, origin=origin[:64])
                for text in fresh.values()
            ]
        )
        audit_record_many(
            ctx=ctx,
            user_id=user.pk,
            events=[
                EventSpec("memory.propose", "proposal", p.public_id, {"origin": origin})
                for p in proposals
            ],
        )
    if user.memory_auto_accept:
        auto = Context(actor=Actor.system("auto-accept"), meta=ctx.meta)
        for p in proposals:
            try:
                proposal_decide(
                    ctx=auto, user=user, proposal_id=p.public_id, accept=True
                )
            except QuotaExceeded:
                logger.info("auto-accept left a proposal pending: quota exceeded")
            p.refresh_from_db()
    return proposals


def proposal_get(*, user: User, proposal_id: str, lock: bool = False) -> MemoryProposal:
    """One of the user's proposals; another user's id is 404 like a missing one."""
    qs = MemoryProposal.objects.filter(user=user)
    if lock:
        qs = qs.select_for_update()
    try:
        if not proposal_id.startswith(PROPOSAL_PREFIX):
            raise ValueError(proposal_id)
        return qs.get(pk=uuid.UUID(proposal_id[len(PROPOSAL_PREFIX) :]))
    except (ValueError, MemoryProposal.DoesNotExist):
        raise NotFound(f"No proposal {proposal_id}.") from None


@transaction.atomic
def proposal_decide(
    *, ctx: Context, user: User, proposal_id: str, accept: bool
) -> MemoryProposal:
    """Accept (store as a memory of its tier, source chat, quota-checked: 429 leaves
    it pending) or reject a pending proposal; deciding twice is 409."""
    proposal = proposal_get(user=user, proposal_id=proposal_id, lock=True)
    if proposal.status != ProposalStatus.PENDING:
        raise Conflict(
            f"Proposal {proposal_id} was already {proposal.status}.",
            code="proposal_decided",
            details={"status": proposal.status},
        )
    if accept:
        item = memory_create(
            ctx=ctx,
            user=user,
            tier=proposal.tier,
            content=validate_content(proposal.content),
            metadata={"source": Source(proposal.source), "tags": ["proposal"]},
        ).item
        proposal.memory_id = item.pk
    proposal.status = ProposalStatus.ACCEPTED if accept else ProposalStatus.REJECTED
    proposal.decided_at = timezone.now()
    proposal.save(update_fields=["status", "memory_id", "decided_at"])
    audit_record(
        ctx=ctx,
        action="memory.proposal.accept" if accept else "memory.proposal.reject",
        user_id=user.pk,
        target_type="proposal",
        target_id=proposal.public_id,
        details={"memory_id": f"mem_{proposal.memory_id}"} if accept else {},
    )
    return proposal


@transaction.atomic
def proposals_withdraw(*, ctx: Context, user: User, origins: list[str]) -> int:
    """Delete the user's pending proposals from `origins`; one audit event."""
    pending = MemoryProposal.objects.filter(
        user=user, status=ProposalStatus.PENDING, origin__in=origins
    )
    withdrawn, _ = pending.delete()
    if withdrawn:
        audit_record(
            ctx=ctx,
            action="memory.proposal.withdraw",
            user_id=user.pk,
            target_type="proposal",
            details={"count": withdrawn},
        )
    return withdrawn
