"""Replies answered in the background, for pages that poll instead of streaming.

`chat_reply_later` takes an exchange `chat_begin` stored (the user's message,
its context assembled and its reads recorded) and lets the model answer it in
a thread of this process, the same way the streamed reply does after its
request has returned (`chat_stream` acts as its user itself). A page then asks
`reply_state` until the reply is stored or the answer failed.

The state lives in the cache, per user and reply: "answering", or "failed" with
the refusal's code and words, never any text of the exchange. It is lost with
the process (a deploy, a crash): the user's message stays stored, and the page
says no reply came once it has waited longer than the model may take.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connections

from chat import selectors
from chat.services import ChatResult, Exchange, chat_stream
from kimberly.api.errors import ApplicationError
from kimberly.context import Context
from users.models import User

logger = logging.getLogger(__name__)

ANSWERING = "answering"
FAILED = "failed"


def _key(user_id: Any, reply_id: uuid.UUID) -> str:
    return f"kb:chat:pending:{user_id}:{reply_id}"


def _seconds() -> int:
    """How long a state is kept: longer than any model call may take."""
    return int(settings.LLM_MAX_SECONDS) + 60


def run_in_background(work: Callable[[], None]) -> None:
    """Run `work` in a daemon thread with its own database connections, closed
    when it ends (tests replace this to run it inline)."""

    def run() -> None:
        try:
            work()
        except Exception:  # a thread's exception would only reach stderr
            logger.exception("background chat reply failed")
        finally:
            connections.close_all()

    threading.Thread(target=run, name="chat-reply", daemon=True).start()


def chat_reply_later(*, ctx: Context, user: User, exchange: Exchange) -> None:
    """Answer the stored exchange in the background; `reply_state` tells how it went."""
    key = _key(user.pk, exchange.reply_id)
    cache.set(key, {"state": ANSWERING}, _seconds())

    def work() -> None:
        for piece in chat_stream(ctx=ctx, user=user, exchange=exchange):
            if isinstance(piece, ApplicationError):
                failed = {
                    "state": FAILED,
                    "code": piece.code,
                    "message": piece.message,
                    "status": piece.status,
                }
                cache.set(key, failed, _seconds())
            elif isinstance(piece, ChatResult):
                cache.delete(key)

    run_in_background(work)


@dataclass(frozen=True)
class PendingReply:
    state: str  # ANSWERING or FAILED
    code: str = ""
    message: str = ""


def reply_state(*, user: User, message_id: str) -> PendingReply | None:
    """The user's reply `message_id` being answered, or how it failed; None when
    there is no such reply in the works (stored already, never asked for, or
    another user's)."""
    state = cache.get(_key(user.pk, selectors.message_pk(message_id)))
    if not state:
        return None
    return PendingReply(
        state=state["state"],
        code=state.get("code", ""),
        message=state.get("message", ""),
    )
