"""The retention policy of chat messages: messages sent before a cutoff go; a
conversation left without messages goes whole (its transcript too), and the
others' transcripts are rewritten without them. What Kimberly offered to
remember from a deleted reply and is still pending is withdrawn, as when the
user deletes a conversation."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db import connection, transaction

from audit.services import audit_record
from chat import transcripts
from chat.models import MESSAGE_PREFIX, Conversation, Message
from kimberly.context import Context
from memory import gateway


def messages_prune(
    *, ctx: Context, cutoff: datetime, user_id: uuid.UUID | None = None
) -> int:
    """Delete the messages sent before `cutoff` (of one user, or everyone's),
    one conversation per transaction; returns how many messages went."""
    due = Message.objects.filter(created_at__lt=cutoff)
    if user_id is not None:
        due = due.filter(user_id=user_id)
    conversation_ids = list(
        due.order_by().values_list("conversation_id", flat=True).distinct()
    )
    return sum(_prune_one(ctx, pk, cutoff) for pk in conversation_ids)


@transaction.atomic
def _prune_one(ctx: Context, conversation_id: uuid.UUID, cutoff: datetime) -> int:
    # The transcript writers' lock first (their order too): a write in flight
    # finishes before, and cannot then mark the stale object fresh.
    with connection.cursor() as cur:
        cur.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
            [transcripts.lock_key(conversation_id)],
        )
    conversation = (
        Conversation.objects.select_for_update()
        .select_related("user")
        .filter(pk=conversation_id)
        .first()
    )
    if conversation is None:  # deleted meanwhile
        return 0
    old = conversation.messages.filter(created_at__lt=cutoff)
    replies = [
        f"{MESSAGE_PREFIX}{pk}"
        for pk in old.filter(role=Message.Role.ASSISTANT).values_list("pk", flat=True)
    ]
    _, per_model = old.delete()
    deleted_messages = per_model.get(Message._meta.label, 0)
    left = conversation.messages.count()
    if left:
        # transcript_messages 0 marks the object stale until it is rewritten
        Conversation.objects.filter(pk=conversation.pk).update(
            message_count=left, transcript_messages=0
        )
        transcripts.schedule_write(conversation.pk)
    else:
        conversation.delete()
        transcripts.schedule_delete(conversation.user_id, conversation.public_id)
    gateway.withdraw_proposals(ctx=ctx, user=conversation.user, origins=replies)
    audit_record(
        ctx=ctx,
        action="chat.retention",
        user_id=conversation.user_id,
        target_type="conversation",
        target_id=conversation.public_id,
        details={
            "messages_deleted": deleted_messages,
            "conversation_deleted": not left,
        },
    )
    return deleted_messages
