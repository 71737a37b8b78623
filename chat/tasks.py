"""Background jobs of the chat app: thin wrappers over services."""

from __future__ import annotations

import uuid

from celery import shared_task

from chat import transcripts
from chat.models import Conversation
from chat.proposals import proposals_from_reply
from kimberly import rls, storage

# S3 outages are transient: retried with backoff; the transcript is rebuilt whole
# from PostgreSQL each time, so a late or repeated write is harmless.


@shared_task(
    name="chat.tasks.write_transcript",
    time_limit=120,
    soft_time_limit=100,
    autoretry_for=(storage.StorageUnavailable,),
    retry_backoff=2,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=8,
)
@rls.task_scope(owner=rls.owner_of("chat.Conversation", "conversation_id"))
def write_transcript(conversation_id: str) -> bool:
    conversation = Conversation.objects.filter(pk=uuid.UUID(conversation_id)).first()
    if conversation is None:
        return False  # deleted meanwhile: its delete removes the object
    transcripts.transcript_write(conversation)
    return True


@shared_task(
    name="chat.tasks.delete_transcript",
    time_limit=60,
    soft_time_limit=50,
    autoretry_for=(storage.StorageUnavailable,),
    retry_backoff=2,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=8,
)
@rls.task_scope(no_rows="an object in storage; the row is gone")
def delete_transcript(key: str) -> None:
    storage.delete(key)


@shared_task(name="chat.tasks.propose_memories", time_limit=180, soft_time_limit=150)
@rls.task_scope(owner=rls.owner_of("chat.Message", "reply_id"))
def propose_memories(reply_id: str) -> int:
    """Offer memories from one exchange (never fails the chat; errors are counted)."""
    return proposals_from_reply(reply_id=uuid.UUID(reply_id))
