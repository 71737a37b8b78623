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


def alternating(history: list[Turn], message: str) -> tuple[list[Turn], str]:
    """History whose roles alternate and end with a reply, and the message to send.

    A message whose reply failed stays in the conversation with no reply after
    it; strict chat templates refuse two user turns in a row. Runs of one role
    are joined (a repeated text once), and the unanswered messages at the end go
    with the new one (which the user may be sending again).
    """
    runs: list[tuple[str, list[str]]] = []
    for turn in history:
        if runs and runs[-1][0] == turn.role:
            parts = runs[-1][1]
            if turn.content.strip() not in (p.strip() for p in parts):
                parts.append(turn.content)
        else:
            runs.append((turn.role, [turn.content]))
    while runs and runs[0][0] == "assistant":  # the window may open mid-exchange
        runs.pop(0)
    if runs and runs[-1][0] == "user":
        pending = [p for p in runs.pop()[1] if p.strip() != message.strip()]
        message = "\n\n".join([*pending, message])
    turns = [Turn(role, "\n\n".join(parts)) for role, parts in runs]  # type: ignore[arg-type]
    return turns, message


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
    turns, text = alternating(history, message)
    prompt = fit_prompt(Prompt(text, turns, notes), prompt_budget())
    kept = {n.memory_id for n in prompt.context}
    return Assembled(prompt, [r for r in recalled if r.memory_id in kept])
