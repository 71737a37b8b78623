"""After an exchange, ask the model which durable facts to offer as memories."""

from __future__ import annotations

import logging
import uuid

from chat.models import Message
from chat.runners import Turn, get_runner
from kimberly.context import Actor, Context
from memory import gateway

logger = logging.getLogger(__name__)


def proposals_from_reply(*, reply_id: uuid.UUID) -> int:
    """Propose memories from the exchange that ended with reply `reply_id`; how many
    were offered. A gone reply, or no configured model, proposes nothing."""
    reply = Message.objects.select_related("user").filter(pk=reply_id).first()
    runner = get_runner()
    if reply is None or not runner.configured:
        return 0
    asked = (
        Message.objects.filter(
            conversation_id=reply.conversation_id,
            role=Message.Role.USER,
            created_at__lte=reply.created_at,
        )
        .order_by("-created_at", "-id")
        .first()
    )
    exchange = [Turn("assistant", reply.content)]
    if asked is not None:
        exchange.insert(0, Turn("user", asked.content))
    facts = runner.propose_facts(exchange)
    if not facts:
        return 0
    ctx = Context(actor=Actor.system("chat-proposals"))
    offered = gateway.propose(
        ctx=ctx, user=reply.user, facts=facts, origin=reply.public_id
    )
    return len(offered)
