"""How a Prompt becomes chat messages for a model, and how it is fitted to a budget.

Pure functions: the OpenAI-compatible runner renders with them, and context
assembly may call `fit_prompt` itself to budget before it calls a runner.
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime

from chat.runners.base import ContextNote, Prompt, estimate_tokens

SYSTEM_TEXT = (
    "You are Kimberly, a personal assistant who remembers what this user has told"
    " you. The numbered memories below are what you know about the user, each with"
    " the date it was recorded; use them when they help you answer, and mind their"
    " dates (a newer memory may supersede an older one). If the answer is not in"
    " your memories, say plainly that you do not know or do not remember. Never"
    " invent memories or facts about the user."
)
NO_MEMORIES_TEXT = "You have no memories that match this message."
# Chat templates wrap every message in a few tokens of role markers.
MESSAGE_OVERHEAD_TOKENS = 4

Message = dict[str, str]


def note_date(created_at: str) -> str:
    """The day of an ISO 8601 timestamp ("2024-05-01"); the text itself if unparsable."""
    try:
        return datetime.fromisoformat(created_at).date().isoformat()
    except ValueError:
        return created_at


def memories_text(context: list[ContextNote]) -> str:
    """The memories as a numbered list, best first, each with its date."""
    if not context:
        return NO_MEMORIES_TEXT
    lines = [
        f"{i}. ({note_date(note.created_at)}) {note.content}"
        for i, note in enumerate(context, start=1)
    ]
    return "What you remember about the user:\n" + "\n".join(lines)


def system_text(context: list[ContextNote], *, today: date | None = None) -> str:
    """Who Kimberly is, today's date, and the memories."""
    day = (today or date.today()).isoformat()
    return f"{SYSTEM_TEXT}\nToday is {day}.\n\n{memories_text(context)}"


def render_messages(prompt: Prompt, *, today: date | None = None) -> list[Message]:
    """System message (with the memories), the history oldest first, the message."""
    messages = [{"role": "system", "content": system_text(prompt.context, today=today)}]
    messages += [
        {"role": turn.role, "content": turn.content} for turn in prompt.history
    ]
    messages.append({"role": "user", "content": prompt.message})
    return messages


def messages_tokens(messages: list[Message]) -> int:
    """Estimated tokens of chat messages, role markers included."""
    return sum(
        estimate_tokens(m["content"]) + MESSAGE_OVERHEAD_TOKENS for m in messages
    )


def prompt_tokens(prompt: Prompt) -> int:
    """Estimated tokens of the rendered prompt (any day's date is as long)."""
    return messages_tokens(render_messages(prompt, today=date.min))


def fit_prompt(prompt: Prompt, budget: int) -> Prompt:
    """`prompt` cut to about `budget` tokens: the oldest history turns go first,
    then the lowest-ranked memories. The user's message is never cut, so a
    message alone over the budget comes back over it."""
    history, context = list(prompt.history), list(prompt.context)

    def fitted() -> Prompt:
        return dataclasses.replace(prompt, history=history, context=context)

    while history and prompt_tokens(fitted()) > budget:
        del history[0]
        # Strict chat templates reject a conversation that opens with the
        # assistant (roles must alternate), so a turn left orphaned goes too.
        if history and history[0].role == "assistant":
            del history[0]
    while context and prompt_tokens(fitted()) > budget:
        context.pop()
    return fitted()
