"""The runner with no language model behind it (LLM_BASE_URL unset).

It answers honestly from memory alone: it says that no language model is
configured, then lists what it remembers that matches, with the dates. It
never pretends to understand the message and never proposes memories.
"""

from __future__ import annotations

from collections.abc import Iterator

from chat.runners.base import Completion, Prompt, Turn, estimate_tokens
from chat.runners.prompting import note_date, prompt_tokens

NOT_CONFIGURED = (
    "No language model is configured, so I cannot answer in my own words;"
    " I can only tell you what I remember."
)
NOTHING_FOUND = "I found nothing in my memory that matches your message."
FOUND = "Here is what I remember that matches your message:"


def offline_reply_text(prompt: Prompt) -> str:
    """The whole reply: the notice, then the matching memories or that none match."""
    if not prompt.context:
        return f"{NOT_CONFIGURED}\n\n{NOTHING_FOUND}"
    lines = [f"- {note_date(n.created_at)}: {n.content}" for n in prompt.context]
    return f"{NOT_CONFIGURED}\n\n{FOUND}\n" + "\n".join(lines)


class OfflineRunner:
    """Deterministic replies from the prompt's context notes; usage is estimated."""

    name = "offline"
    model = "offline"
    configured = False

    def reply(self, prompt: Prompt) -> Completion:
        """The reply as one Completion."""
        content = offline_reply_text(prompt)
        return Completion(
            content=content,
            prompt_tokens=prompt_tokens(prompt),
            completion_tokens=estimate_tokens(content),
            model=self.model,
        )

    def reply_stream(self, prompt: Prompt) -> Iterator[str | Completion]:
        """The reply a paragraph or line at a time, then the Completion."""
        completion = self.reply(prompt)
        yield from completion.content.splitlines(keepends=True)
        yield completion

    def propose_facts(self, exchange: list[Turn]) -> list[str]:
        """Nothing: without a model there is no one to tell what is worth keeping."""
        return []
