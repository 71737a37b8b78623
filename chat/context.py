"""Context assembly: which memories and turns go with a message to the model.

The user's latest session entries (short-term, from Redis) and one hybrid
retrieval over the message and the previous user turn, de-duplicated and best
first, through
the memory gateway (never sensitive, never archived, never another user's);
then cut to the token budget, oldest turns first, then the weakest memories.
What survives the cut is exactly what the model is given and what the reply's
provenance records.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from chat.runners import ContextNote, Prompt, Turn, fit_prompt
from memory import gateway
from users.models import User

PREVIOUS_TURN_CHARS = 300


@dataclass(frozen=True)
class Assembled:
    prompt: Prompt
    used: list[gateway.Recalled]  # the memories of prompt.context, in its order


def prompt_budget() -> int:
    """Tokens the prompt may take: the context window less the reply's share."""
    return max(settings.LLM_CONTEXT_TOKENS - settings.LLM_REPLY_TOKENS, 0)


def retrieval_query(message: str, history: list[Turn]) -> str:
    """What to retrieve for: the message, then the previous user turn (a follow-up
    such as "and her husband?" needs it), in one query: one embedding and one
    pass over the user's memories, not two."""
    previous = [t.content for t in history if t.role == "user"][-1:]
    return " ".join([message, *(p[:PREVIOUS_TURN_CHARS] for p in previous)])


def assemble(*, user: User, message: str, history: list[Turn]) -> Assembled:
    """The prompt for `message` after `history` (oldest first), under the budget."""
    recalled = gateway.recall(
        user=user,
        query=retrieval_query(message, history),
        limit=settings.CHAT_CONTEXT_MEMORIES,
    )
    notes = [
        ContextNote(
            memory_id=r.memory_id,
            tier=r.tier,
            content=r.content,
            why=r.why,
            created_at=r.created_at.isoformat(),
        )
        for r in recalled
    ]
    prompt = fit_prompt(Prompt(message, history, notes), prompt_budget())
    kept = {n.memory_id for n in prompt.context}
    return Assembled(prompt, [r for r in recalled if r.memory_id in kept])
