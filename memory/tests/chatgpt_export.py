"""A realistic ChatGPT `conversations.json`, generated (tests and bench/import_chatgpt.py).

Shaped like a real export: a list of conversations, each a tree in `mapping`
with a null root, a hidden system message, the user's hidden custom
instructions (`user_editable_context`), user turns (plain text, and now and
then multimodal_text with an image part) answered by the assistant, a tool
call, an edited prompt on a branch of its own, and null create_times on the
system nodes. Only the user's visible text turns are memories.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

SUBJECTS = [
    "my sister Anna",
    "the garden",
    "our trip to Lisbon",
    "the new job",
    "my running plan",
    "the book club",
    "grandma's recipe",
    "the kitchen renovation",
    "learning Spanish",
    "the dentist",
]
VERBS = [
    "I keep thinking about",
    "Can you help me plan",
    "Remind me what I said about",
    "I finally finished",
    "I'm worried about",
    "What should I buy for",
    "Write a short note about",
    "I want to remember",
]
DETAILS = [
    "before the weekend",
    "because it matters to me",
    "and it went better than expected",
    "in March",
    "every Tuesday evening",
    "with a budget of 200 euros",
    "without telling anyone yet",
    "since last summer",
]


def user_text(rng: random.Random) -> str:
    return f"{rng.choice(VERBS)} {rng.choice(SUBJECTS)} {rng.choice(DETAILS)}."


def _node(
    rng: random.Random,
    parent: str | None,
    role: str | None,
    *,
    when: float | None,
    content: dict[str, Any] | None = None,
    hidden: bool = False,
) -> dict[str, Any]:
    node_id = str(uuid.UUID(int=rng.getrandbits(128)))
    message: dict[str, Any] | None = None
    if role is not None:
        message = {
            "id": node_id,
            "author": {"role": role, "name": None, "metadata": {}},
            "create_time": when,
            "update_time": None,
            "content": content or {"content_type": "text", "parts": [""]},
            "status": "finished_successfully",
            "end_turn": role == "assistant" or None,
            "weight": 1.0,
            "metadata": {"is_visually_hidden_from_conversation": True}
            if hidden
            else {},
            "recipient": "all",
        }
    return {"id": node_id, "message": message, "parent": parent, "children": []}


def conversation(
    rng: random.Random, start: datetime, user_turns: int, texts: list[str]
) -> tuple[dict[str, Any], list[tuple[str, str, float]]]:
    """One conversation and its importable user messages (id, text, epoch time)."""
    t = start.timestamp()
    mapping: dict[str, dict[str, Any]] = {}
    wanted: list[tuple[str, str, float]] = []

    def add(node: dict[str, Any]) -> dict[str, Any]:
        mapping[node["id"]] = node
        if node["parent"]:
            mapping[node["parent"]]["children"].append(node["id"])
        return node

    tip = add(_node(rng, None, None, when=None))["id"]
    tip = add(_node(rng, tip, "system", when=None, hidden=True))["id"]
    instructions = {
        "content_type": "user_editable_context",
        "user_profile": "I live in Porto.",
        "user_instructions": "Be brief.",
    }
    tip = add(_node(rng, tip, "user", when=t, content=instructions, hidden=True))["id"]
    for turn in range(user_turns):
        t += rng.uniform(20, 600)
        text = texts.pop() if texts else user_text(rng)
        parts: list[Any] = [text]
        kind = "text"
        if turn % 4 == 3:  # an image with a caption
            kind = "multimodal_text"
            parts = [{"content_type": "image_asset_pointer", "size_bytes": 1024}, text]
        node = add(
            _node(
                rng, tip, "user", when=t, content={"content_type": kind, "parts": parts}
            )
        )
        wanted.append((node["id"], text, t))
        if turn == 1:  # the user edited this prompt: the old one is a sibling branch
            old = user_text(rng)
            sib = add(
                _node(
                    rng,
                    tip,
                    "user",
                    when=t - 5,
                    content={"content_type": "text", "parts": [old]},
                )
            )
            wanted.append((sib["id"], old, t - 5))
        tip = node["id"]
        if turn == 2:  # a tool call and its output
            code = {
                "content_type": "code",
                "language": "unknown",
                "text": "search('x')",
            }
            tip = add(_node(rng, tip, "assistant", when=t + 1, content=code))["id"]
            out = {"content_type": "execution_output", "text": "results"}
            tip = add(_node(rng, tip, "tool", when=t + 2, content=out))["id"]
        reply = {"content_type": "text", "parts": [f"Sure. About that: {text[:40]}"]}
        tip = add(_node(rng, tip, "assistant", when=t + 3, content=reply))["id"]
    conv_id = str(uuid.UUID(int=rng.getrandbits(128)))
    conv = {
        "title": f"Conversation about {rng.choice(SUBJECTS)}",
        "create_time": start.timestamp(),
        "update_time": t + 3,
        "mapping": mapping,
        "moderation_results": [],
        "current_node": tip,
        "plugin_ids": None,
        "conversation_id": conv_id,
        "conversation_template_id": None,
        "gizmo_id": None,
        "is_archived": False,
        "safe_urls": [],
        "id": conv_id,
    }
    return conv, wanted


def chatgpt_export(
    *,
    user_messages: int,
    per_conversation: int = 10,
    seed: int = 7,
    start: datetime | None = None,
    texts: list[str] | None = None,
) -> tuple[list[dict[str, Any]], list[tuple[str, str, float]]]:
    """An export holding exactly `user_messages` importable user messages, and
    those messages (id, text, epoch create_time) in file order.

    `per_conversation` counts user turns; each conversation's edited prompt adds
    one more importable message, which is counted in.
    """
    rng = random.Random(seed)
    when = start or datetime(2023, 3, 1, 9, 0, tzinfo=UTC)
    pool = list(reversed(texts or []))
    data: list[dict[str, Any]] = []
    wanted: list[tuple[str, str, float]] = []
    while len(wanted) < user_messages:
        left = user_messages - len(wanted)
        if left > 2:  # the edited prompt adds one message to the turns
            conv, msgs = conversation(rng, when, min(per_conversation, left - 1), pool)
        else:
            conv, msgs = _plain(rng, when, left, pool)
        data.append(conv)
        wanted += msgs
        when += timedelta(hours=rng.uniform(5, 48))
    return data, wanted


def _plain(
    rng: random.Random, start: datetime, turns: int, texts: list[str]
) -> tuple[dict[str, Any], list[tuple[str, str, float]]]:
    conv, _ = conversation(rng, start, 0, texts)
    tip = conv["current_node"]
    t = start.timestamp()
    wanted = []
    for _ in range(turns):
        t += 60
        text = texts.pop() if texts else user_text(rng)
        node = _node(
            rng, tip, "user", when=t, content={"content_type": "text", "parts": [text]}
        )
        conv["mapping"][node["id"]] = node
        conv["mapping"][tip]["children"].append(node["id"])
        wanted.append((node["id"], text, t))
        tip = node["id"]
    conv["current_node"] = tip
    return conv, wanted
