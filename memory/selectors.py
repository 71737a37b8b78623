"""Reads for memories, always scoped by the acting user."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum

from kimberly.api.errors import NotFound
from memory import embeddings, sealing
from memory.constants import ID_PREFIX, Status
from memory.models import (
    Goal,
    MeditationRun,
    MemoryItem,
    MemoryProposal,
    MemoryVersion,
    RetrievalRecord,
    ScoreRecord,
)
from memory.quotas import TierUsage, item_counts, quota_overview
from users import consents
from users.models import Consent, User

ORDERINGS = {
    "created_at",
    "-created_at",
    "updated_at",
    "-updated_at",
    "score",
    "-score",
    "size_bytes",
    "-size_bytes",
    "last_seen_at",
    "-last_seen_at",
}


def parse_memory_id(raw: str) -> uuid.UUID:
    """`mem_<uuid>` → UUID; anything else is simply not found."""
    if not isinstance(raw, str) or not raw.startswith(ID_PREFIX):
        raise NotFound(f"No memory {raw}.")
    try:
        return uuid.UUID(raw[len(ID_PREFIX) :])
    except ValueError:
        raise NotFound(f"No memory {raw}.") from None


def memory_get(*, user: User, memory_id: str) -> MemoryItem:
    """One of the user's items; another user's id is 404 like a missing one, and
    so is a sensitive item hidden by a withdrawn consent (it waits to be purged;
    PATCH or DELETE still reach it, to unmark or delete it first)."""
    pk = parse_memory_id(memory_id)
    try:
        return visible_items(user).get(pk=pk)
    except MemoryItem.DoesNotExist:
        raise NotFound(f"No memory {memory_id}.") from None


def visible_items(user: User) -> QuerySet[MemoryItem]:
    """The user's items a reader may see: not the sensitive ones hidden by a
    withdrawn consent (they wait to be purged)."""
    return MemoryItem.objects.filter(user=user, consent=True)


def visible_counts(*, user: User) -> dict[tuple[str, str], int]:
    """How many visible items the user has per (tier, status)."""
    return item_counts(visible_items(user))


def tier_usage(
    *, user: User, counts: Mapping[tuple[str, str], int] | None = None
) -> list[TierUsage]:
    """Quota, hard limit, usage and the counts of visible items of each of the
    user's tiers (`counts`: visible_counts, when the caller has them)."""
    if counts is None:
        counts = visible_counts(user=user)
    return quota_overview(user_id=user.pk, counts=counts)


def memories_by_id(
    *, user: User, item_ids: list[uuid.UUID]
) -> dict[uuid.UUID, MemoryItem]:
    """The visible ones of the user's items `item_ids`, by id (gone or hidden
    ones are simply absent)."""
    return visible_items(user).in_bulk(item_ids)


@dataclass(frozen=True)
class MemoryFilters:
    tier: str | None = None
    tags: list[str] | None = None
    tags_mode: str = "any"
    status: str = Status.ACTIVE
    since: datetime | None = None
    until: datetime | None = None
    q: str | None = None
    source: str | None = None
    embedded: bool | None = None
    ordering: str = "-created_at"


def filter_items(
    qs: QuerySet[MemoryItem],
    *,
    tier: str | None = None,
    tags: list[str] | None = None,
    tags_mode: str = "any",
    since: datetime | None = None,
    until: datetime | None = None,
    source: str | None = None,
) -> QuerySet[MemoryItem]:
    """The metadata filters shared by listing and retrieval."""
    if tier:
        qs = qs.filter(tier=tier)
    if tags:
        lookup = "tags__contains" if tags_mode == "all" else "tags__overlap"
        qs = qs.filter(Q(**{lookup: tags}))
    if since:
        qs = qs.filter(created_at__gte=since)
    if until:
        qs = qs.filter(created_at__lt=until)
    if source:
        qs = qs.filter(source=source)
    return qs


def memory_list(*, user: User, filters: MemoryFilters) -> QuerySet[MemoryItem]:
    """The user's items matching the filters (status "all" for both); hidden
    sensitive items (consent withdrawn, waiting to be purged) are left out."""
    qs = visible_items(user)
    if filters.status != "all":
        qs = qs.filter(status=filters.status)
    if filters.q:  # never matches a sealed item: its row has no text
        qs = qs.filter(content__icontains=filters.q)
    if filters.embedded is not None:
        # embedding_ref is set exactly while the item has a vector of its content
        qs = (qs.exclude if filters.embedded else qs.filter)(embedding_ref="")
    qs = filter_items(
        qs,
        tier=filters.tier,
        tags=filters.tags,
        tags_mode=filters.tags_mode,
        since=filters.since,
        until=filters.until,
        source=filters.source,
    )
    return qs.order_by(filters.ordering, "-id")


def memory_history(
    *, user: User, memory_id: str
) -> tuple[MemoryItem, list[MemoryVersion]]:
    """The item now, and each earlier state it had, oldest first."""
    item = memory_get(user=user, memory_id=memory_id)
    return item, sealing.open_versions(item.user_id, item.versions.order_by("version"))


# A vector is the embedding model's reading of the plaintext, kept unsealed in
# memory_memoryembedding: a sensitive item has one only while its user's
# model_context consent (models may read sensitive items) stands.
VECTOR_CONSENT = consents.Purpose.MODEL_CONTEXT


def with_vector_consent(qs: QuerySet[MemoryItem]) -> QuerySet[MemoryItem]:
    """The items of `qs` that may have a vector."""
    standing = Consent.objects.filter(
        user=OuterRef("user"), purpose=VECTOR_CONSENT, withdrawn_at__isnull=True
    )
    return qs.exclude(Q(sensitive=True) & ~Exists(standing))


def vector_allowed(user: User, item: MemoryItem) -> bool:
    return not item.sensitive or consents.has_consent(user, VECTOR_CONSENT)


def unsealed_versions() -> QuerySet[MemoryVersion]:
    """Versions that should be sealed and are not: those taken while their item
    was sensitive (every one, with SEAL_ALL_CONTENT), whatever the item is now."""
    qs = MemoryVersion.objects.filter(sealed__isnull=True)
    return qs if sealing.wanted(False) else qs.filter(metadata__sensitive=True)


def unsealed_items() -> QuerySet[MemoryItem]:
    """Items that should be sealed and are not, or that keep such a version
    (stored before sealing existed, or before SEAL_ALL_CONTENT was turned on)."""
    plain = Q(sealed__isnull=True)
    if not sealing.wanted(False):
        plain &= Q(sensitive=True)
    history = Exists(unsealed_versions().filter(item=OuterRef("pk")))
    return MemoryItem.objects.filter(plain | history)


def unsealed_sensitive_count(*, user: User | None = None) -> int:
    """How many items of `user` (or of everyone) wait for `./cli memory
    seal-existing` (their text, or a version of it): 0 is what the compliance
    check expects."""
    qs = unsealed_items()
    return (qs.filter(user=user) if user is not None else qs).count()


@dataclass(frozen=True)
class MemoryMetrics:
    tiers: list[TierUsage]
    last_meditation: datetime | None
    embedding_enabled: bool
    embedding_pending: int


def memory_metrics(*, user: User) -> MemoryMetrics:
    return MemoryMetrics(
        tiers=tier_usage(user=user),
        last_meditation=last_meditation(user=user),
        embedding_enabled=user.embedding_enabled,
        embedding_pending=embedding_pending(user=user),
    )


def items_waiting_for_vector() -> QuerySet[MemoryItem]:
    """Active memories that will be embedded but have no vector of their content
    yet (empty embedding_ref: never embedded, or edited since); none while
    embeddings are off for the system, and none of users who turned them off.
    Answered from the memory_unembedded partial index."""
    if not embeddings.enabled():
        return MemoryItem.objects.none()
    return with_vector_consent(
        MemoryItem.objects.filter(
            status=Status.ACTIVE, embedding_ref="", user__embedding_enabled=True
        )
    )


def embedding_pending(*, user: User) -> int:
    """The user's memories still waiting for their vector."""
    return items_waiting_for_vector().filter(user=user).count()


def goals_for(*, user: User) -> QuerySet[Goal]:
    return Goal.objects.filter(user=user).order_by("-created_at")


def meditation_runs_for(*, user: User) -> QuerySet[MeditationRun]:
    return MeditationRun.objects.filter(user=user).order_by("-started_at", "-id")


def meditation_run_get(*, user: User, run_id: int) -> MeditationRun:
    """One of the user's runs; another user's is 404 like a missing one."""
    try:
        return MeditationRun.objects.get(pk=run_id, user=user)
    except MeditationRun.DoesNotExist:
        raise NotFound(f"No meditation run {run_id}.") from None


def nightly_runs(*, limit: int = 10) -> QuerySet[MeditationRun]:
    """The latest scope-all runs (every user's nightly meditation), newest first,
    with how many of their per-user runs failed (an operator's view)."""
    return (
        MeditationRun.objects.filter(scope=MeditationRun.Scope.ALL)
        .annotate(
            users=Count("children"),
            failed_users=Count(
                "children", filter=Q(children__status=MeditationRun.State.FAILED)
            ),
        )
        .order_by("-started_at", "-id")[:limit]
    )


def last_meditation(*, user: User) -> datetime | None:
    return (
        MeditationRun.objects.filter(user=user, status="done", dry_run=False)
        .order_by("-finished_at")
        .values_list("finished_at", flat=True)
        .first()
    )


@dataclass(frozen=True)
class MeditationNight:
    """One finished (not dry) meditation of a user: what it did, how long it
    took, and the bytes per tier of the memories it considered."""

    run_id: int
    finished_at: datetime
    processed: int
    promoted: int
    archived: int
    purged: int
    duration_ms: int | None
    storage: dict[str, int]


def meditation_history(*, user: User, limit: int = 30) -> list[MeditationNight]:
    """The user's last `limit` finished meditations, oldest first."""
    runs = list(
        MeditationRun.objects.filter(
            user=user, status=MeditationRun.State.DONE, dry_run=False
        ).order_by("-finished_at", "-id")[:limit]
    )
    storage: dict[int, dict[str, int]] = {r.pk: {} for r in runs}
    for row in (
        ScoreRecord.objects.filter(run_id__in=list(storage))
        .values("run_id", "tier")
        .annotate(total=Sum("size_bytes"))
        .order_by()
    ):
        storage[row["run_id"]][row["tier"]] = row["total"]
    return [
        MeditationNight(
            run_id=r.pk,
            finished_at=r.finished_at or r.started_at,
            processed=r.processed,
            promoted=r.promoted,
            archived=r.archived,
            purged=r.purged,
            duration_ms=r.duration_ms,
            storage=storage[r.pk],
        )
        for r in reversed(runs)
    ]


def memory_accesses(*, user: User, memory_id: str) -> QuerySet[RetrievalRecord]:
    """When and where one of the user's memories was read (queries, chat replies,
    agent tasks), newest first; kept for RETRIEVAL_RECORDS_DAYS."""
    item = memory_get(user=user, memory_id=memory_id)
    return RetrievalRecord.objects.filter(item_id=item.pk, user_id=user.pk).order_by(
        "-created_at", "-id"
    )


def proposals_for(*, user: User, status: str | None = None) -> QuerySet[MemoryProposal]:
    """The user's proposals, newest first, optionally of one status."""
    qs = MemoryProposal.objects.filter(user=user)
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("-created_at", "-id")
