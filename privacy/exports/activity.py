"""What the export says about a user's conversations, attachments, agents and
audit trail: one generator of records per part, always scoped by the user
(records as in records.py: exactly the properties of export.schema.json)."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from agents.models import AgentTask, Event, Reminder
from audit.selectors import audit_events_for_user
from chat.models import Conversation, Message, MessageContext
from kimberly.api.serializers import iso_time
from memory.models import Attachment
from privacy.exports.records import Record, _pid, batched
from users.models import User

_UNSAFE = re.compile(r"[^\w.\- ]")


def transcript_path(conversation: Conversation) -> str:
    return f"transcripts/{conversation.public_id}.jsonl"


def attachment_path(attachment: Attachment) -> str:
    """Where the stored file goes in the zip: its id, then its name made safe to
    unpack anywhere (no directories, no dot files)."""
    name = _UNSAFE.sub("_", attachment.filename).lstrip(". ")[:120] or "file"
    return f"attachments/{attachment.public_id}/{name}"


def conversations_of(user: User) -> Iterator[Conversation]:
    qs = Conversation.objects.filter(user=user).order_by("created_at", "id")
    yield from qs.iterator()


def conversation(c: Conversation, transcript: str | None) -> Record:
    return {
        "id": c.public_id,
        "title": c.title,
        "message_count": c.message_count,
        "created_at": iso_time(c.created_at),
        "updated_at": iso_time(c.updated_at),
        "transcript": transcript,
    }


def _context(ctx: MessageContext) -> Record:
    return {
        "memory_id": f"mem_{ctx.memory_id}",
        "rank": ctx.rank,
        "tier": ctx.tier,
        "version": ctx.version,
        "digest": ctx.digest,
        "score": ctx.score,
        "relevance": ctx.relevance,
        "final": ctx.final,
        "why": ctx.why,
    }


def messages(user: User) -> Iterator[Record]:
    """Every message of every conversation, with the memories each reply used."""
    qs = Message.objects.filter(user=user).order_by(
        "conversation_id", "created_at", "id"
    )
    for batch in batched(qs):
        used: dict[Any, list[Record]] = defaultdict(list)
        for ctx in MessageContext.objects.filter(
            message_id__in=[m.pk for m in batch]
        ).order_by("message_id", "rank"):
            used[ctx.message_id].append(_context(ctx))
        for m in batch:
            yield {
                "id": m.public_id,
                "conversation_id": f"conv_{m.conversation_id}",
                "role": m.role,
                "content": m.content,
                "created_at": iso_time(m.created_at),
                "runner": m.runner,
                "model": m.model,
                "prompt_tokens": m.prompt_tokens,
                "completion_tokens": m.completion_tokens,
                "memory_id": _pid("mem_", m.memory_id),
                "context": used[m.pk],
            }


def attachments_of(user: User) -> Iterator[Attachment]:
    qs = Attachment.objects.filter(user=user).order_by("created_at", "id")
    yield from qs.iterator()


def attachment(a: Attachment, file: str | None) -> Record:
    return {
        "id": a.public_id,
        "filename": a.filename,
        "content_type": a.content_type,
        "size_bytes": a.size_bytes,
        "sha256": a.sha256,
        "tier": a.tier,
        "tags": list(a.tags),
        "chunks": a.chunks,
        "text_chars": a.text_chars,
        "created_at": iso_time(a.created_at),
        "file": file,
    }


def agent_tasks(user: User) -> Iterator[Record]:
    """Every task given to an agent, with its result, error, plan and trace."""
    qs = AgentTask.objects.filter(user=user).order_by("created_at", "id")
    for t in qs.iterator(chunk_size=100):
        yield {
            "id": t.public_id,
            "agent": t.agent,
            "task": t.task,
            "params": t.params,
            "routed": t.routed,
            "preview": t.preview,
            "mode": t.mode,
            "status": t.status,
            "timeout": t.timeout,
            "attempts": t.attempts,
            "result": t.result,
            "error": t.error,
            "plan": t.plan,
            "trace": t.trace,
            "created_at": iso_time(t.created_at),
            "started_at": iso_time(t.started_at),
            "finished_at": iso_time(t.finished_at),
        }


def reminders(user: User) -> Iterator[Record]:
    for r in Reminder.objects.filter(user=user).order_by("due_at", "id").iterator():
        yield {
            "id": r.public_id,
            "task_id": _pid("tsk_", r.task_id),
            "what": r.what,
            "due_at": iso_time(r.due_at),
            "time_zone": r.time_zone,
            "status": r.status,
            "created_at": iso_time(r.created_at),
            "delivered_at": iso_time(r.delivered_at),
            "memory_id": _pid("mem_", r.memory_id),
            "error": r.error,
            "webhook": r.webhook,
            "webhook_attempts": r.webhook_attempts,
            "webhook_error": r.webhook_error,
        }


def events(user: User) -> Iterator[Record]:
    for e in Event.objects.filter(user=user).order_by("starts_at", "id").iterator():
        yield {
            "id": e.public_id,
            "task_id": _pid("tsk_", e.task_id),
            "uid": e.uid,
            "title": e.title,
            "starts_at": iso_time(e.starts_at),
            "ends_at": iso_time(e.ends_at),
            "all_day": e.all_day,
            "source": e.source,
            "memory_id": _pid("mem_", e.memory_id),
            "created_at": iso_time(e.created_at),
        }


def audit_events(user: User) -> Iterator[Record]:
    """The user's own audit chain in order, with the hashes that prove it whole."""
    qs = audit_events_for_user(user_id=user.pk).order_by("seq")
    for e in qs.iterator(chunk_size=1000):
        yield {
            "seq": e.seq,
            "action": e.action,
            "actor_type": e.actor_type,
            "actor_id": e.actor_id,
            "target_type": e.target_type,
            "target_id": e.target_id,
            "request_id": e.request_id,
            "ip": e.ip,
            "user_agent": e.user_agent,
            "details": e.details,
            "created_at": iso_time(e.created_at),
            "prev_hash": e.prev_hash,
            "hash": e.hash,
        }
