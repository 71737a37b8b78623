"""Chat: the transcript with replies streamed (server-sent events) or whole,
the composer, the context rail of each reply with protect and archive in
place, proposed memories to accept or reject, and the conversations list.

Each view parses its input, makes one call into chat's or memory's services
and selectors (the ones the API calls), and renders a page or a fragment.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import push_url

from chat import pending as chat_pending
from chat import selectors as chat_selectors
from chat import services as chat_services
from chat.models import MESSAGE_PREFIX, Conversation, Message
from chat.runners import get_runner
from chat.services import MAX_MESSAGE_CHARS, ChatResult, Exchange
from kimberly import rls
from kimberly.api.errors import ApplicationError, NotFound
from kimberly.api.renderers import sse_event
from kimberly.context import Context, context_from_request
from memory import selectors as memory_selectors
from memory import services as memory_services
from memory.constants import ProposalStatus
from memory.services.proposals import proposal_decide
from users.models import User
from web.forms import ChatForm, ProposalPollForm, ReplyPollForm, parse
from web.presenters_chat import (
    RailEntry,
    TurnRow,
    proposal_row,
    rail_entries,
    turn_row,
)
from web.views.base import error_context, is_htmx, render, user_view
from web.views.memory import ACTIONS, UNDO

# The last messages of a conversation the page shows; the conversations listed.
TRANSCRIPT_MESSAGES = 60
CONVERSATIONS_LISTED = 50
PROPOSALS_LISTED = 20
# After a reply of a configured model, the page asks for the memories it may
# propose (a background task) every few seconds for this long.
PROPOSAL_POLL_SECONDS = 60
# A page polling for a reply gives up this long after the model's own limit.
REPLY_POLL_GRACE_SECONDS = 15
DECISIONS = {"accept": "Saved to memory.", "reject": "Proposal rejected."}


def _turns(user: User, messages: list[Message]) -> list[TurnRow]:
    """The messages as turns, each reply with its context rail."""
    replies = [m for m in messages if m.role == Message.Role.ASSISTANT]
    used = chat_selectors.contexts_of(user=user, messages=replies)
    items = memory_selectors.memories_by_id(
        user=user,
        item_ids=list({u.used.memory_id for rows in used.values() for u in rows}),
    )
    return [
        turn_row(m, rail_entries(m, used[m.pk], items) if m.pk in used else None)
        for m in messages
    ]


def _proposals(user: User, *, poll: bool = False) -> dict[str, Any]:
    rows = [
        proposal_row(p)
        for p in memory_selectors.proposals_for(
            user=user, status=ProposalStatus.PENDING
        )[:PROPOSALS_LISTED]
    ]
    until = int(time.time()) + PROPOSAL_POLL_SECONDS if poll else None
    return {"proposals": rows, "poll_until": until}


def _common(user: User, conversation: Conversation | None) -> dict[str, Any]:
    return {
        "section": "chat",
        "conversation": conversation,
        "conversations": chat_selectors.conversations_for(user=user)[
            :CONVERSATIONS_LISTED
        ],
        "llm_configured": get_runner().configured,
    }


def _page(
    request: HttpRequest, user: User, conversation: Conversation | None
) -> HttpResponse:
    messages: list[Message] = []
    if conversation is not None:
        qs = chat_selectors.messages_of(conversation=conversation)
        skip = max(qs.count() - TRANSCRIPT_MESSAGES, 0)
        messages = list(qs[skip:])
    context = {
        **_common(user, conversation),
        **_proposals(user),
        "turns": _turns(user, messages),
        "stream": settings.WEB_CHAT_STREAM,
        "max_chars": MAX_MESSAGE_CHARS,
    }
    return render(request, "web/chat/page.html", context)


@require_GET
@user_view
def chat_page(request: HttpRequest, user: User) -> HttpResponse:
    """A new conversation, beside the list of the earlier ones."""
    return _page(request, user, None)


@require_GET
@user_view
def chat_conversation(
    request: HttpRequest, user: User, conversation_id: str
) -> HttpResponse:
    conversation = chat_selectors.conversation_get(
        user=user, conversation_id=conversation_id
    )
    return _page(request, user, conversation)


def _message(request: HttpRequest) -> dict[str, Any]:
    data = parse(ChatForm, request.POST)
    return {
        "message": data["message"],
        "conversation_id": data["conversation_id"] or None,
        "save_to_memory": data["save_to_memory"],
    }


def _replied(user: User, result: ChatResult) -> dict[str, Any]:
    return _reply_context(user, result.exchange.conversation, result.reply)


def _reply_context(
    user: User, conversation: Conversation, reply: Message
) -> dict[str, Any]:
    """The reply with its rail, and the list, composer and proposals in step
    (polling for what a configured model may propose from this exchange)."""
    poll = get_runner().configured and settings.CHAT_PROPOSALS
    return {
        **_common(user, conversation),
        **_proposals(user, poll=poll),
        "reply": _turns(user, [reply])[0],
        "oob": True,
    }


def _said(result: ChatResult) -> str:
    saved = result.exchange.message.memory_id is not None
    return _said_of(len(result.exchange.assembled.used), saved=saved)


def _said_of(count: int, *, saved: bool = False) -> str:
    used = (
        f"using {count} memor{'y' if count == 1 else 'ies'}"
        if count
        else "using no memory"
    )
    note = " Your message was saved to memory." if saved else ""
    return f"Kimberly replied, {used}.{note}"


@require_POST
@user_view
def chat_send(request: HttpRequest, user: User) -> HttpResponse:
    """The composer without streaming. With htmx: the message at once, and a
    reply the page polls for (answered in the background); a plain form post
    waits for the whole reply, then goes back to the conversation's page."""
    ctx = context_from_request(request)
    if not is_htmx(request):
        result = chat_services.chat_reply(ctx=ctx, user=user, **_message(request))
        conversation = result.exchange.conversation
        return redirect(reverse("web:chat-conversation", args=[conversation.public_id]))
    exchange = chat_pending.chat_send_later(ctx=ctx, user=user, **_message(request))
    conversation = exchange.conversation
    reply_id = f"{MESSAGE_PREFIX}{exchange.reply_id}"
    until = int(time.time() + settings.LLM_MAX_SECONDS + REPLY_POLL_GRACE_SECONDS)
    context = {
        **_common(user, conversation),
        "asked": turn_row(exchange.message),
        "pending": True,
        "pending_id": f"pending-{reply_id}",
        "poll_url": reverse("web:chat-reply-poll", args=[reply_id]) + f"?until={until}",
        "oob": True,
    }
    said = "Message sent; Kimberly is answering."
    if exchange.message.memory_id:
        said += " Your message was saved to memory."
    response = render(request, "web/chat/_exchange.html", context, said=said)
    url = reverse("web:chat-conversation", args=[conversation.public_id])
    return push_url(response, url)


def _no_reply(
    request: HttpRequest, message_id: str, words: str, code: str
) -> HttpResponse:
    context = {"note": words, "code": code, "pending_id": f"pending-{message_id}"}
    return render(request, "web/chat/_no_reply.html", context, said=f"Error: {words}")


@require_GET
@user_view
def chat_reply_poll(request: HttpRequest, user: User, message_id: str) -> HttpResponse:
    """The reply the page waits for: the reply with its rail once stored (the
    polling element is replaced), its refusal in words, "no reply came" after
    the page's deadline, else 204 (htmx keeps the element and asks again).
    404 before the deadline for a reply neither stored nor being answered for
    this user (another user's, say)."""
    until = parse(ReplyPollForm, request.GET)["until"] or 0
    # The state first: the thread stores the reply, then marks it done.
    state = chat_pending.reply_state(user=user, message_id=message_id)
    reply = chat_selectors.reply_get(user=user, message_id=message_id)
    if reply is not None:
        context = _reply_context(user, reply.conversation, reply)
        said = _said_of(len(context["reply"].rail or []))
        return render(request, "web/chat/_replied.html", context, said=said)
    if state is not None and state.state == chat_pending.FAILED:
        return _no_reply(request, message_id, f"No reply: {state.message}", state.code)
    if time.time() > until:
        words = "No reply came in time. Your message is kept: send it again."
        return _no_reply(request, message_id, words, "runner_timeout")
    if state is None:
        raise NotFound(f"No reply {message_id} is being answered.")
    return HttpResponse(status=204)


@require_POST
@user_view
def chat_stream(request: HttpRequest, user: User) -> HttpResponse:
    """The composer with streaming: the user's message is stored (a refusal is
    an ordinary error response), then the reply comes as server-sent events:
    `turn` (the message and an empty reply), `delta`s, then `done` (the reply
    with its rail, as HTML) or `error`."""
    ctx = context_from_request(request)
    exchange = chat_services.chat_begin(ctx=ctx, user=user, **_message(request))
    conversation = exchange.conversation
    turn = {
        "html": render_to_string(
            "web/chat/_asked.html",
            {"asked": turn_row(exchange.message), "pending": True},
            request,
        ),
        "conversation_id": conversation.public_id,
        "url": reverse("web:chat-conversation", args=[conversation.public_id]),
    }
    response = StreamingHttpResponse(
        _events(request, ctx, user, exchange, turn),
        content_type="text/event-stream; charset=utf-8",
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies: pass each event at once
    # user_view's door is typed for HttpResponse; a stream goes through it as well.
    return response  # type: ignore[return-value]


def _events(
    request: HttpRequest,
    ctx: Context,
    user: User,
    exchange: Exchange,
    turn: dict[str, str],
) -> Iterator[str]:
    yield sse_event("turn", turn)
    for piece in chat_services.chat_stream(ctx=ctx, user=user, exchange=exchange):
        if isinstance(piece, str):
            yield sse_event("delta", {"content": piece})
        elif isinstance(piece, ApplicationError):
            html = render_to_string("web/_error.html", error_context(piece), request)
            yield sse_event("error", {"html": html, "message": piece.message})
        else:
            # After the request's row-level-security frame: act as the user.
            with rls.acting_user(user.pk):
                html = render_to_string(
                    "web/chat/_replied.html", _replied(user, piece), request
                )
            yield sse_event("done", {"html": html, "said": _said(piece)})


def _rail_entry(user: User, message_id: str, memory_id: str) -> RailEntry:
    """One memory of a reply's rail, as it stands now; 404 unless that reply
    (one of the user's) used that memory."""
    message = chat_selectors.message_get(user=user, message_id=message_id)
    if message.role != Message.Role.ASSISTANT:
        raise NotFound(f"No reply {message_id}.")
    turn = _turns(user, [message])[0]
    for entry in turn.rail:
        if entry.memory_id == memory_id:
            return entry
    raise NotFound(f"Reply {message_id} did not use memory {memory_id}.")


@require_POST
@user_view
def rail_action(
    request: HttpRequest, user: User, message_id: str, memory_id: str, action: str
) -> HttpResponse:
    """Protect, unprotect, archive (remove) or restore a memory from the rail
    of a reply that used it: the rail's entry again."""
    if action not in ACTIONS:
        raise NotFound(f"No action {action}.")
    _rail_entry(user, message_id, memory_id)
    memory_services.memory_lifecycle(
        ctx=context_from_request(request), user=user, memory_id=memory_id, action=action
    )
    context = {"entry": _rail_entry(user, message_id, memory_id), "focus": UNDO[action]}
    return render(request, "web/chat/_rail_entry.html", context, said=ACTIONS[action])


@require_GET
@user_view
def proposals_poll(request: HttpRequest, user: User) -> HttpResponse:
    """The proposals panel when what is pending changed since the page last
    saw it (204 otherwise: htmx keeps it); 286 (htmx: stop polling) once the
    page has asked long enough."""
    data = parse(ProposalPollForm, request.GET)
    until = data["until"] or 0
    still = time.time() < until
    context = _proposals(user)
    if still and len(context["proposals"]) == data["seen"]:
        return HttpResponse(status=204)
    context["poll_until"] = until if still else None
    return render(
        request, "web/chat/_proposals.html", context, status=200 if still else 286
    )


@require_POST
@user_view
def proposal_decision(
    request: HttpRequest, user: User, proposal_id: str, decision: str
) -> HttpResponse:
    if decision not in DECISIONS:
        raise NotFound(f"No decision {decision}.")
    proposal = proposal_decide(
        ctx=context_from_request(request),
        user=user,
        proposal_id=proposal_id,
        accept=decision == "accept",
    )
    context = {"proposal": proposal_row(proposal), "decided": True}
    return render(request, "web/chat/_proposal.html", context, said=DECISIONS[decision])
