"""Chat writes: a message in, Kimberly's reply out, with the exact context it used.

The user's message is committed before the model is called, so a runner that
fails or times out loses nothing of it (the 502/504 names the conversation and
the message). The reply, its provenance rows and the `memory.read` audit events
are one transaction.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from audit.services import audit_record
from chat import metrics, selectors, transcripts
from chat.context import Assembled, assemble
from chat.models import MESSAGE_PREFIX, Conversation, Message, MessageContext
from chat.runners import Completion, ModelRunner, RunnerError, RunnerTimeout, get_runner
from kimberly import rls
from kimberly.api.errors import ApplicationError, Conflict, invalid_field
from kimberly.api.ratelimit import rate_limit_hit
from kimberly.context import Context
from memory import gateway
from users.models import User

logger = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 8000
TITLE_CHARS = 80


@dataclass
class Exchange:
    """A user's message, stored, and the prompt assembled for it."""

    conversation: Conversation
    message: Message
    reply_id: uuid.UUID
    assembled: Assembled
    runner: ModelRunner
    started: float


@dataclass(frozen=True)
class ChatResult:
    exchange: Exchange
    reply: Message


def _validate(message: Any) -> str:
    if not isinstance(message, str) or not message.strip():
        raise invalid_field("message", "must be a non-empty string")
    if len(message) > MAX_MESSAGE_CHARS:
        raise invalid_field("message", f"at most {MAX_MESSAGE_CHARS} characters")
    return message


def chat_begin(
    *,
    ctx: Context,
    user: User,
    message: Any,
    conversation_id: str | None = None,
    save_to_memory: bool = False,
) -> Exchange:
    """Validate, assemble the context, then store the user's message (and, with
    `save_to_memory`, a short-term memory of it: over quota is 429, nothing kept)."""
    started = time.perf_counter()
    text = _validate(message)
    rate_limit_hit(
        scope="chat",
        ident=str(user.pk),
        limit=settings.CHAT_RATE_PER_USER,
        window_seconds=settings.CHAT_RATE_WINDOW_SECONDS,
    )
    conversation = None
    history = []
    if conversation_id is not None:
        conversation = selectors.conversation_get(
            user=user, conversation_id=conversation_id
        )
        history = selectors.recent_turns(
            user=user, conversation=conversation, limit=settings.CHAT_HISTORY_TURNS
        )
    # Before the message is stored: a message saved to memory must not come
    # back as its own context.
    assembled = assemble(user=user, message=text, history=history)
    metrics.chat_seconds.labels(stage="context").observe(time.perf_counter() - started)
    with transaction.atomic():
        if conversation is None:
            conversation = Conversation.objects.create(
                user=user, title=" ".join(text.split())[:TITLE_CHARS]
            )
        else:
            # Serializes two messages to one conversation (their order, counts).
            _lock_conversation(conversation)
        msg = Message(
            conversation=conversation,
            user=user,
            role=Message.Role.USER,
            content=text,
            created_at=timezone.now(),
        )
        if save_to_memory:
            item = gateway.remember(ctx=ctx, user=user, content=text, tags=["chat"])
            msg.memory_id = item.pk
        msg.save(force_insert=True)
        Conversation.objects.filter(pk=conversation.pk).update(
            message_count=F("message_count") + 1, updated_at=timezone.now()
        )
        # Recorded now, with the reply's id reserved: the memories reach the model
        # whether or not a reply comes back (502, 504, a dropped stream).
        reply_id = uuid.uuid4()
        gateway.record_reads(
            ctx=ctx,
            user=user,
            reader=gateway.Reader("chat", f"{MESSAGE_PREFIX}{reply_id}"),
            used=assembled.used,
        )
    return Exchange(conversation, msg, reply_id, assembled, get_runner(), started)


def _lock_conversation(conversation: Conversation) -> None:
    """Lock the conversation's row for this transaction; 409 when another request
    deleted it meanwhile (while the context was assembled or the model answered)."""
    if Conversation.objects.select_for_update().filter(pk=conversation.pk).first():
        return
    metrics.chat_requests.labels(result="conversation_deleted").inc()
    raise Conflict(
        "The conversation was deleted while Kimberly was answering.",
        code="conversation_deleted",
        details={"conversation_id": conversation.public_id},
    )


def _failed(exchange: Exchange, exc: ApplicationError) -> ApplicationError:
    result = "runner_timeout" if isinstance(exc, RunnerTimeout) else "runner_error"
    metrics.chat_requests.labels(result=result).inc()
    exc.details = {
        **exc.details,
        "conversation_id": exchange.conversation.public_id,
        "message_id": exchange.message.public_id,
        "saved": "your message is kept; send it again to retry",
    }
    return exc


def chat_finish(
    *, ctx: Context, user: User, exchange: Exchange, completion: Completion
) -> Message:
    """Store the reply with exactly the memories it was given, and audit each read."""
    used = exchange.assembled.used
    with transaction.atomic():
        _lock_conversation(exchange.conversation)
        reply = Message.objects.create(
            id=exchange.reply_id,
            conversation=exchange.conversation,
            user=user,
            role=Message.Role.ASSISTANT,
            content=completion.content,
            created_at=timezone.now(),
            runner=exchange.runner.name,
            model=completion.model[:128],
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
        )
        MessageContext.objects.bulk_create(
            MessageContext(
                message=reply,
                memory_id=r.item_id,
                rank=rank,
                tier=r.tier,
                version=r.version,
                digest=gateway.content_digest(r.content),
                score=r.score,
                relevance=r.relevance,
                final=r.final,
                why=r.why[:500],
            )
            for rank, r in enumerate(used, 1)
        )
        Conversation.objects.filter(pk=exchange.conversation.pk).update(
            message_count=F("message_count") + 1, updated_at=timezone.now()
        )
        transcripts.schedule_write(exchange.conversation.pk)
        if exchange.runner.configured and settings.CHAT_PROPOSALS:
            from chat.tasks import propose_memories

            reply_id = str(reply.pk)
            # robust: with the broker down the reply stands; only proposals wait.
            transaction.on_commit(lambda: propose_memories.delay(reply_id), robust=True)
    metrics.chat_requests.labels(result="ok").inc()
    metrics.chat_seconds.labels(stage="total").observe(
        time.perf_counter() - exchange.started
    )
    return reply


def model_call(exchange: Exchange) -> Completion:
    """The model's whole reply to the exchange (no database: nothing is stored)."""
    started = time.perf_counter()
    try:
        return exchange.runner.reply(exchange.assembled.prompt)
    except (RunnerError, RunnerTimeout) as exc:
        raise _failed(exchange, exc) from exc
    finally:
        metrics.chat_seconds.labels(stage="model").observe(
            time.perf_counter() - started
        )


def chat_reply(*, ctx: Context, user: User, **message: Any) -> ChatResult:
    """Answer a message (POST /v1/chat without stream)."""
    exchange = chat_begin(ctx=ctx, user=user, **message)
    completion = model_call(exchange)
    return ChatResult(
        exchange,
        chat_finish(ctx=ctx, user=user, exchange=exchange, completion=completion),
    )


def chat_stream(
    *, ctx: Context, user: User, exchange: Exchange
) -> Iterator[str | ChatResult | ApplicationError]:
    """The reply as it comes (text deltas), then the stored ChatResult; or an
    ApplicationError when the runner fails (the user's message stays kept).

    The response streams it after the request's row-level-security frame has
    ended (RlsMiddleware): the generator acts as its user itself."""
    with rls.acting_user(user.pk):
        yield from _stream(ctx=ctx, user=user, exchange=exchange)


def _stream(
    *, ctx: Context, user: User, exchange: Exchange
) -> Iterator[str | ChatResult | ApplicationError]:
    started = time.perf_counter()
    completion: Completion | None = None
    try:
        for piece in exchange.runner.reply_stream(exchange.assembled.prompt):
            if isinstance(piece, Completion):
                completion = piece
            else:
                yield piece
    except (RunnerError, RunnerTimeout) as exc:
        yield _failed(exchange, exc)
        return
    finally:
        metrics.chat_seconds.labels(stage="model").observe(
            time.perf_counter() - started
        )
    if completion is None:
        yield _failed(exchange, RunnerError("The model runner ended without a reply."))
        return
    try:
        reply = chat_finish(
            ctx=ctx, user=user, exchange=exchange, completion=completion
        )
    except ApplicationError as exc:  # the stream has begun: an event, not a status
        yield exc
        return
    yield ChatResult(exchange, reply)


@transaction.atomic
def conversation_delete(*, ctx: Context, user: User, conversation_id: str) -> None:
    """Delete a conversation, its messages, their provenance and its transcript."""
    conversation = selectors.conversation_get(
        user=user, conversation_id=conversation_id
    )
    replies = [
        f"{MESSAGE_PREFIX}{pk}"
        for pk in conversation.messages.filter(role=Message.Role.ASSISTANT).values_list(
            "pk", flat=True
        )
    ]
    conversation.delete()
    # "Forget this": what Kimberly offered to remember from it goes too.
    gateway.withdraw_proposals(ctx=ctx, user=user, origins=replies)
    audit_record(
        ctx=ctx,
        action="chat.delete",
        user_id=user.pk,
        target_type="conversation",
        target_id=conversation_id,
    )
    transcripts.schedule_delete(user.pk, conversation_id)
