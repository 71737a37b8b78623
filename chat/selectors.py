"""Reads of conversations and messages, always scoped by the acting user."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db.models import QuerySet

from chat.models import (
    CONVERSATION_PREFIX,
    MESSAGE_PREFIX,
    Conversation,
    Message,
    MessageContext,
)
from chat.runners import Turn
from kimberly.api.errors import NotFound
from memory import gateway
from users.models import User


def _parse(raw: str, prefix: str, what: str) -> uuid.UUID:
    try:
        if not raw.startswith(prefix):
            raise ValueError(raw)
        return uuid.UUID(raw[len(prefix) :])
    except ValueError:
        raise NotFound(f"No {what} {raw}.") from None


def conversation_get(*, user: User, conversation_id: str) -> Conversation:
    """One of the user's conversations; another user's id is 404 like a missing one."""
    pk = _parse(conversation_id, CONVERSATION_PREFIX, "conversation")
    try:
        return Conversation.objects.get(pk=pk, user=user)
    except Conversation.DoesNotExist:
        raise NotFound(f"No conversation {conversation_id}.") from None


def conversations_for(*, user: User) -> QuerySet[Conversation]:
    return Conversation.objects.filter(user=user).order_by("-updated_at", "-id")


def messages_of(*, conversation: Conversation) -> QuerySet[Message]:
    """A conversation's messages, oldest first."""
    return conversation.messages.order_by("created_at", "id")


# An earlier reply that drew on a memory the user has since deleted, archived,
# edited or marked sensitive is not sent again: it may quote that memory.
WITHHELD_REPLY = "(An earlier reply is left out: a memory it used is no longer shared.)"


def recent_turns(*, user: User, conversation: Conversation, limit: int) -> list[Turn]:
    """The last `limit` turns of a conversation, oldest first, each reply withheld
    when a memory it was given may no longer go to a model."""
    rows = list(
        conversation.messages.order_by("-created_at", "-id").values_list(
            "pk", "role", "content"
        )[:limit]
    )[::-1]
    replies = [pk for pk, role, _ in rows if role == Message.Role.ASSISTANT]
    used = list(
        MessageContext.objects.filter(message_id__in=replies).values_list(
            "message_id", "memory_id", "digest"
        )
    )
    states = gateway.memory_states(user=user, item_ids=[m for _, m, _ in used])
    # Edited counts too: a user who redacts a memory by editing it expects the
    # old text gone from what the model is sent.
    withheld = {
        reply
        for reply, memory, digest in used
        if not states[memory].shareable or states[memory].digest != digest
    }
    return [
        Turn(role, WITHHELD_REPLY if pk in withheld else content)  # type: ignore[arg-type]
        for pk, role, content in rows
    ]


def message_pk(message_id: str) -> uuid.UUID:
    """The id inside a message's public id (404 when it is not one)."""
    return _parse(message_id, MESSAGE_PREFIX, "message")


def reply_get(*, user: User, message_id: str) -> Message | None:
    """The user's reply `message_id` once it is stored, else None."""
    return (
        Message.objects.select_related("conversation")
        .filter(pk=message_pk(message_id), user=user, role=Message.Role.ASSISTANT)
        .first()
    )


def message_get(*, user: User, message_id: str) -> Message:
    pk = message_pk(message_id)
    try:
        return Message.objects.select_related("conversation").get(pk=pk, user=user)
    except Message.DoesNotExist:
        raise NotFound(f"No message {message_id}.") from None


@dataclass(frozen=True)
class UsedMemory:
    """A memory that went into a reply, with where it stands now."""

    used: MessageContext
    status: str  # active | archived | hidden | deleted
    edited: bool  # its content changed since the reply used it


def message_context(*, user: User, message: Message) -> list[UsedMemory]:
    """The exact memories a reply was given, best first, and their state now."""
    return contexts_of(user=user, messages=[message])[message.pk]


def contexts_of(
    *, user: User, messages: list[Message]
) -> dict[uuid.UUID, list[UsedMemory]]:
    """`message_context` of each of `messages` (a transcript's replies) in two
    queries: their provenance rows, and where those memories stand now."""
    rows = list(
        MessageContext.objects.filter(message_id__in=[m.pk for m in messages]).order_by(
            "message_id", "rank"
        )
    )
    states = gateway.memory_states(
        user=user, item_ids=list({r.memory_id for r in rows})
    )
    out: dict[uuid.UUID, list[UsedMemory]] = {m.pk: [] for m in messages}
    for r in rows:
        state = states[r.memory_id]
        edited = state.digest is not None and state.digest != r.digest
        out[r.message_id].append(UsedMemory(r, state.status, edited))
    return out
