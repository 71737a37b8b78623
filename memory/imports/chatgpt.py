"""ChatGPT's `conversations.json` export → records: what the user wrote, when.

The export is a list of conversations, each a tree of nodes in `mapping`
({node_id: {message, parent, children}}; the root's message is null). Every
user message of every branch is imported (an edited prompt is still something
the user wrote): `content_type` text, or multimodal_text's text parts, joined.
Assistant, system and tool messages, hidden ones (custom instructions, context
the app adds) and messages without text are skipped and counted by reason, not
refused. A message's `create_time` (epoch seconds, may be null) falls back to
its conversation's.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from memory.imports.formats import (
    ImportRecord,
    ParsedImport,
    bad,
    external_id,
    import_metadata,
    not_future,
)

TEXT_TYPES = frozenset({"text", "multimodal_text"})
ROLES = frozenset({"assistant", "system", "tool"})


def chatgpt_records(data: list[Any], tier: str) -> ParsedImport:
    records: list[ImportRecord] = []
    skipped: Counter[str] = Counter()
    meta = import_metadata(None, ["import", "chatgpt"], record=None)
    for n, conv in enumerate(data):
        if not isinstance(conv, dict) or not isinstance(conv.get("mapping"), dict):
            raise bad("mapping", "must be an object of message nodes", record=n)
        fallback = conv.get("create_time")
        for node_id, node in conv["mapping"].items():
            where = f"mapping.{str(node_id)[:64]}"
            if not isinstance(node, dict):
                raise bad(where, "must be an object", record=n)
            message = node.get("message")
            if message is None:
                continue  # the tree's root
            if not isinstance(message, dict):
                raise bad(f"{where}.message", "must be an object", record=n)
            reason, text = _user_text(message, f"{where}.message", n)
            if reason:
                skipped[reason] += 1
                continue
            msg_id = message.get("id", node_id)
            if not isinstance(msg_id, str):
                raise bad(f"{where}.message.id", "must be a string", record=n)
            ext = external_id(
                f"chatgpt:{msg_id}", field=f"{where}.message.id", record=n
            )
            when = _epoch(message.get("create_time"), fallback, f"{where}.message", n)
            records.append(ImportRecord(n, ext, text, when, tier, meta))
    return ParsedImport("chatgpt", records, dict(skipped))


def _user_text(message: dict[str, Any], where: str, n: int) -> tuple[str, str]:
    """("", text) for a user's visible text message, else (why it is skipped, "")."""
    author = message.get("author")
    if not isinstance(author, dict) or not isinstance(author.get("role"), str):
        raise bad(f"{where}.author.role", "must be a string", record=n)
    role = author["role"]
    if role != "user":
        return (f"{role}_message" if role in ROLES else "other_message"), ""
    meta = message.get("metadata")
    if isinstance(meta, dict) and meta.get("is_visually_hidden_from_conversation"):
        return "hidden_message", ""
    content = message.get("content")
    if not isinstance(content, dict):
        raise bad(f"{where}.content", "must be an object", record=n)
    if content.get("content_type") not in TEXT_TYPES:
        return "non_text_content", ""
    parts = content.get("parts")
    if not isinstance(parts, list):
        raise bad(f"{where}.content.parts", "must be a list", record=n)
    text = "\n".join(p for p in parts if isinstance(p, str) and p.strip())
    if not text.strip():
        return ("non_text_content" if parts else "empty_message"), ""
    return "", text


def _epoch(value: Any, fallback: Any, where: str, n: int) -> datetime:
    if value is None:
        value = fallback
    field = f"{where}.create_time"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad(field, "must be epoch seconds (a number)", record=n)
    try:
        if not math.isfinite(value):
            raise ValueError
        when = datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise bad(field, "is not a valid time", record=n) from None
    return not_future(when, field=field, record=n)
