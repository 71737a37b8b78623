"""Conversation transcripts in object storage: JSON lines, one object per conversation.

Format (version 1), also read by `POST /v1/memory/import` (format `kimberly`):

    {"kimberly_transcript": 1, "conversation_id": "conv_…", "title": "…", "created_at": "…"}
    {"id": "msg_…", "role": "user", "content": "…", "created_at": "…"}
    {"id": "msg_…", "role": "assistant", "content": "…", "created_at": "…", "context": ["mem_…"]}

The object is rewritten after each exchange by a task (`transcript_messages`
says how many messages it holds); a download of a stale one rewrites it first.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction

from chat.models import Conversation, MessageContext
from kimberly import storage
from kimberly.api.serializers import iso_time

FORMAT_VERSION = 1


def transcript_key(user_id: uuid.UUID | str, conversation_id: str) -> str:
    return storage.user_key(user_id, "transcripts", f"{conversation_id}.jsonl")


def lock_key(conversation_id: uuid.UUID) -> str:
    """The advisory lock writers of one conversation's transcript take turns on."""
    return f"transcript:{conversation_id}"


def transcript_bytes(conversation: Conversation) -> tuple[bytes, int]:
    """The transcript of `conversation` and how many messages it holds."""
    messages = list(conversation.messages.order_by("created_at", "id"))
    context: dict[uuid.UUID, list[str]] = defaultdict(list)
    for message_id, memory_id in (
        MessageContext.objects.filter(message__conversation=conversation)
        .order_by("message_id", "rank")
        .values_list("message_id", "memory_id")
    ):
        context[message_id].append(f"mem_{memory_id}")
    lines: list[dict[str, object]] = [
        {
            "kimberly_transcript": FORMAT_VERSION,
            "conversation_id": conversation.public_id,
            "title": conversation.title,
            "created_at": iso_time(conversation.created_at),
        }
    ]
    for m in messages:
        line: dict[str, object] = {
            "id": m.public_id,
            "role": m.role,
            "content": m.content,
            "created_at": iso_time(m.created_at),
        }
        if m.role == "assistant":
            line["context"] = context[m.pk]
        lines.append(line)
    text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    return text.encode(), len(messages)


def transcript_write(conversation: Conversation) -> None:
    """Write the transcript object now; record how many messages it holds.

    Writers of one conversation take turns (an advisory lock), each reading the
    messages under the lock, so the last object written is the newest and the
    count beside it is that object's.
    """
    key = transcript_key(conversation.user_id, conversation.public_id)
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                [lock_key(conversation.pk)],
            )
        if not Conversation.objects.filter(pk=conversation.pk).exists():
            return  # deleted: its own delete removes the object
        data, count = transcript_bytes(conversation)
        storage.put_bytes(key, data, "application/x-ndjson")
        Conversation.objects.filter(pk=conversation.pk).update(
            transcript_messages=count
        )
    if not Conversation.objects.filter(pk=conversation.pk).exists():
        # Deleted while we wrote: its own delete may have run before our put.
        storage.delete(key)


@dataclass(frozen=True)
class TranscriptLink:
    url: str
    expires_in: int
    messages: int


def transcript_link(conversation: Conversation) -> TranscriptLink:
    """A short-lived signed link to the transcript, brought up to date first."""
    if conversation.transcript_messages < conversation.message_count:
        transcript_write(conversation)
    expires = settings.STORAGE_URL_EXPIRE_SECONDS
    url = storage.signed_url(
        transcript_key(conversation.user_id, conversation.public_id),
        filename=f"{conversation.public_id}.jsonl",
        expires=expires,
    )
    return TranscriptLink(url, expires, conversation.message_count)


def schedule_write(conversation_id: uuid.UUID) -> None:
    """Rewrite the transcript after this commit (robust: with the broker down the
    next exchange, or a download, brings it up to date)."""
    from chat.tasks import write_transcript

    transaction.on_commit(
        lambda: write_transcript.delay(str(conversation_id)), robust=True
    )


def schedule_delete(user_id: uuid.UUID, conversation_id: str) -> None:
    """Delete the transcript object once the conversation's deletion commits: at
    once, or by a retried task while object storage is down."""
    key = transcript_key(user_id, conversation_id)

    def delete() -> None:
        try:
            storage.delete(key)
        except storage.StorageUnavailable:
            from chat.tasks import delete_transcript

            delete_transcript.delay(key)

    transaction.on_commit(delete, robust=True)
