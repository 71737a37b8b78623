"""What the export says about a user's profile and memory: one generator of
records (JSON-ready dicts) per part, always scoped by the user.

Each record has exactly the properties its `$defs` entry in export.schema.json
lists (the CSV columns are read from there too). Memory is read from memory's
models and selectors directly: the export is the user reading their own data,
not an agent acting for them, so it does not go through memory.gateway.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any, TypeVar

from django.db.models import Model, QuerySet

from agents.models import UserAgentSwitch
from kimberly.api.serializers import iso_time
from memory import sealing
from memory.models import (
    Goal,
    MeditationRun,
    MemoryImport,
    MemoryItem,
    MemoryProposal,
    MemoryVersion,
    RetrievalRecord,
    ScoreRecord,
)
from memory.quotas import quota_overview
from users.models import Consent, User

Record = dict[str, Any]
M = TypeVar("M", bound=Model)
BATCH = 500


def batched(qs: QuerySet[M], size: int = BATCH) -> Iterator[list[M]]:
    """The rows of `qs` in lists of `size`, read with a server-side cursor."""
    batch: list[M] = []
    for row in qs.iterator(chunk_size=size):
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _pid(prefix: str, value: object) -> str | None:
    return f"{prefix}{value}" if value is not None else None


def profile(user: User) -> Iterator[Record]:
    """The user's profile and settings: what GET /v1/user shows, and the agent
    switches; never the password hash nor the webhook secret."""
    switches = UserAgentSwitch.objects.filter(user=user).order_by("agent")
    yield {
        "id": str(user.pk),
        "email": user.email,
        "date_joined": iso_time(user.date_joined),
        "last_login": iso_time(user.last_login),
        "is_active": user.is_active,
        "embedding_enabled": user.embedding_enabled,
        "consent_telemetry": user.consent_telemetry,
        "memory_auto_accept": user.memory_auto_accept,
        "meditation_weights": user.meditation_weights,
        "time_zone": user.time_zone,
        "webhook_url": user.webhook_url,
        "webhook_secret_set": bool(user.webhook_secret),
        "agent_switches": [
            {
                "agent": s.agent,
                "enabled": s.enabled,
                "changed_at": iso_time(s.changed_at),
            }
            for s in switches
        ],
    }


def _consents(user: User) -> list[Record]:
    """The consent ledger (users.Consent): every grant of every purpose, oldest
    first, with when it was withdrawn (if it was) and where it came from."""
    return [
        {
            "purpose": c.purpose,
            "granted": c.withdrawn_at is None,
            "granted_at": iso_time(c.granted_at),
            "withdrawn_at": iso_time(c.withdrawn_at),
            "source": c.source,
        }
        for c in Consent.objects.filter(user=user).order_by("granted_at", "pk")
    ]


def consents(user: User) -> Iterator[Record]:
    yield from _consents(user)


def _version(v: MemoryVersion) -> Record:
    return {
        "version": v.version,
        "action": v.action,
        "actor_type": v.actor_type,
        "actor_id": v.actor_id,
        "changed_at": iso_time(v.changed_at),
        "tier": v.tier,
        "status": v.status,
        "protected": v.protected,
        "content": v.content,
        "metadata": v.metadata,
    }


def _score(s: ScoreRecord) -> Record:
    return {
        "run_id": s.run_id,
        "tier": s.tier,
        "relevance_to_goals": s.relevance_to_goals,
        "emotional_weight": s.emotional_weight,
        "predictive_value": s.predictive_value,
        "recency_freq": s.recency_freq,
        "score": s.score,
        "previous_score": s.previous_score,
        "decision": s.decision,
        "reason": s.reason,
    }


def _memory(item: MemoryItem, versions: list[Record], scores: list[Record]) -> Record:
    return {
        "id": item.public_id,
        "tier": item.tier,
        "status": item.status,
        "content": item.content,
        "size_bytes": item.size_bytes,
        "tags": list(item.tags),
        "source": item.source,
        "channels": list(item.channels),
        "sensitive": item.sensitive,
        "scope": item.scope,
        "user_feedback": item.user_feedback,
        "version": item.version,
        "score": item.score,
        "protected": item.protected,
        "consent": item.consent,
        "created_by": item.created_by,
        "external_id": item.external_id,
        "sentiment": item.sentiment,
        "access_count": item.access_count,
        "attachment_id": _pid("att_", item.attachment_id),
        "attachment_offset": item.attachment_offset,
        "created_at": iso_time(item.created_at),
        "updated_at": iso_time(item.updated_at),
        "last_seen_at": iso_time(item.last_seen_at),
        "archived_at": iso_time(item.archived_at),
        "versions": versions,
        "scores": scores,
    }


def memories(user: User) -> Iterator[Record]:
    """Every memory of every tier, archived too, each with its earlier versions
    and the score records meditation kept of it (oldest first)."""
    items = MemoryItem.objects.filter(user=user).order_by("created_at", "id")
    for batch in batched(items):
        ids = [item.pk for item in batch]
        versions: dict[Any, list[Record]] = defaultdict(list)
        for v in sealing.open_versions(
            user.pk,
            MemoryVersion.objects.filter(item_id__in=ids).order_by(
                "item_id", "version"
            ),
        ):
            versions[v.item_id].append(_version(v))
        scores: dict[Any, list[Record]] = defaultdict(list)
        for s in ScoreRecord.objects.filter(run__user=user, item_id__in=ids).order_by(
            "item_id", "run_id"
        ):
            scores[s.item_id].append(_score(s))
        for item in batch:
            yield _memory(item, versions[item.pk], scores[item.pk])


def goals(user: User) -> Iterator[Record]:
    for g in Goal.objects.filter(user=user).order_by("created_at", "id").iterator():
        yield {
            "id": g.pk,
            "text": g.text,
            "tags": list(g.tags),
            "created_at": iso_time(g.created_at),
        }


def proposals(user: User) -> Iterator[Record]:
    qs = MemoryProposal.objects.filter(user=user).order_by("created_at", "id")
    for p in qs.iterator():
        yield {
            "id": p.public_id,
            "content": p.content,
            "tier": p.tier,
            "source": p.source,
            "origin": p.origin,
            "status": p.status,
            "memory_id": _pid("mem_", p.memory_id),
            "created_at": iso_time(p.created_at),
            "decided_at": iso_time(p.decided_at),
        }


def imports(user: User) -> Iterator[Record]:
    qs = MemoryImport.objects.filter(user=user).order_by("created_at", "id")
    for i in qs.iterator():
        yield {
            "id": i.public_id,
            "format": i.format,
            "tier": i.tier,
            "status": i.status,
            "file_bytes": i.file_bytes,
            "total": i.total,
            "processed": i.processed,
            "imported": i.imported,
            "skipped_duplicate": i.skipped_duplicate,
            "refused": i.refused,
            "refusals": i.refusals,
            "skipped": i.skipped,
            "error": i.error,
            "created_at": iso_time(i.created_at),
            "started_at": iso_time(i.started_at),
            "finished_at": iso_time(i.finished_at),
        }


def quotas(user: User) -> Iterator[Record]:
    """Quota and usage of each tier (as GET /v1/memory/metrics shows them)."""
    for usage in quota_overview(user_id=user.pk):
        yield asdict(usage)


def meditation_runs(user: User) -> Iterator[Record]:
    qs = MeditationRun.objects.filter(user=user).order_by("started_at", "id")
    for r in qs.iterator():
        yield {
            "id": r.pk,
            "dry_run": r.dry_run,
            "status": r.status,
            "scoring_version": r.scoring_version,
            "weights": r.weights,
            "as_of": iso_time(r.as_of),
            "started_at": iso_time(r.started_at),
            "finished_at": iso_time(r.finished_at),
            "processed": r.processed,
            "promoted": r.promoted,
            "expired": r.expired,
            "archived": r.archived,
            "purged": r.purged,
            "deferred": r.deferred,
            "error": r.error,
        }


def retrievals(user: User) -> Iterator[Record]:
    """When a memory was read, by what (kept for RETRIEVAL_RECORDS_DAYS)."""
    qs = RetrievalRecord.objects.filter(user_id=user.pk).order_by("created_at", "id")
    for r in qs.iterator(chunk_size=BATCH):
        yield {
            "memory_id": f"mem_{r.item_id}",
            "kind": r.kind,
            "request_id": r.request_id,
            "rank": r.rank,
            "final": r.final,
            "created_at": iso_time(r.created_at),
        }
