"""Replies answered in the background, for pages that poll instead of streaming.

`chat_send_later` stores the user's message the way every chat does
(`chat_begin`: validated, its context assembled, its reads recorded), then
lets the model answer it in a thread of this process while the page asks
`reply_state` (and for the stored reply) until it is there.

- Bounded: at most WEB_CHAT_REPLY_THREADS replies per process are answered at
  once; past that a message is refused (503 `chat_busy`, nothing stored), as a
  streamed reply is when every web thread is busy.
- The thread holds no database connection while the model answers: it
  connects only to store the reply (`chat_finish`, as the user) and closes it.
- The state lives in the cache, per user and reply: "answering", "done" for a
  moment after the reply is stored, or "failed" with the refusal's code and
  words; never any text of the exchange. Once the user is erased, a reply
  still in flight writes no state back (`xx`: only over a key that exists).
- A deploy or a crash loses the thread: the message stays stored, and the page
  says no reply came once it has waited longer than the model may take.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connections, transaction

from chat import selectors
from chat.services import Exchange, chat_begin, chat_finish, model_call
from kimberly import rls
from kimberly.api.errors import ApplicationError
from kimberly.context import Context
from users.models import User

logger = logging.getLogger(__name__)

ANSWERING = "answering"
DONE = "done"
FAILED = "failed"
BUSY_RETRY_SECONDS = 5

_slots: threading.BoundedSemaphore | None = None
_slots_lock = threading.Lock()


def _capacity() -> threading.BoundedSemaphore:
    global _slots
    with _slots_lock:
        if _slots is None:
            _slots = threading.BoundedSemaphore(settings.WEB_CHAT_REPLY_THREADS)
        return _slots


def _key(user_id: Any, reply_id: uuid.UUID) -> str:
    return f"kb:chat:pending:{user_id}:{reply_id}"


def _seconds() -> int:
    """How long a state is kept: longer than any model call may take."""
    return int(settings.LLM_MAX_SECONDS) + 60


def run_in_background(work: Callable[[], None]) -> None:
    """Run `work` in a daemon thread, in the caller's context (its request id
    in every log line), with database connections of its own that are closed
    when it ends (tests replace this to run it inline)."""
    context = contextvars.copy_context()

    def run() -> None:
        try:
            context.run(work)
        finally:
            connections.close_all()

    threading.Thread(target=run, name="chat-reply", daemon=True).start()


def _update(key: str, state: dict[str, str]) -> None:
    """Overwrite the state, only while it exists (the user may have been erased
    meanwhile: django-redis's SET ... XX)."""
    cache.set(key, state, _seconds(), xx=True)  # type: ignore[call-arg]


def _answer(ctx: Context, user: User, exchange: Exchange, key: str) -> None:
    try:
        completion = model_call(exchange)  # no database connection meanwhile
        with rls.acting_user(user.pk):
            chat_finish(ctx=ctx, user=user, exchange=exchange, completion=completion)
        _update(key, {"state": DONE})
    except ApplicationError as exc:
        _update(key, {"state": FAILED, "code": exc.code, "message": exc.message})
    except Exception:
        logger.exception("background chat reply failed")
        failed = "Something went wrong on our side."
        _update(key, {"state": FAILED, "code": "internal_error", "message": failed})
    finally:
        _capacity().release()


def chat_send_later(*, ctx: Context, user: User, **message: Any) -> Exchange:
    """Store the message and have it answered in the background (503 chat_busy
    when this process answers as many as it may, before anything is stored)."""
    slots = _capacity()
    if not slots.acquire(blocking=False):
        raise ApplicationError(
            "Kimberly is answering too many messages at once. Try again shortly.",
            code="chat_busy",
            status=503,
            details={"retry_after": BUSY_RETRY_SECONDS},
            headers={"Retry-After": str(BUSY_RETRY_SECONDS)},
        )
    try:
        exchange = chat_begin(ctx=ctx, user=user, **message)
        key = _key(user.pk, exchange.reply_id)
        cache.set(key, {"state": ANSWERING}, _seconds())
    except BaseException:
        slots.release()
        raise
    # After the message's commit (a request wrapped in a transaction included).
    transaction.on_commit(
        lambda: run_in_background(lambda: _answer(ctx, user, exchange, key))
    )
    return exchange


@dataclass(frozen=True)
class PendingReply:
    state: str  # ANSWERING, DONE or FAILED
    code: str = ""
    message: str = ""


def reply_state(*, user: User, message_id: str) -> PendingReply | None:
    """The user's reply `message_id` being answered, just stored, or how it
    failed; None when there is no such reply in the works (long stored, never
    asked for, lost with its process, or another user's)."""
    state = cache.get(_key(user.pk, selectors.message_pk(message_id)))
    if not state:
        return None
    return PendingReply(
        state=state["state"],
        code=state.get("code", ""),
        message=state.get("message", ""),
    )
