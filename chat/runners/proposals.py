"""Asking a model for durable facts in an exchange, and reading its answer strictly.

The model's reply is untrusted text: anything that is not exactly
`{"facts": ["...", ...]}` is discarded and counted, never stored. A fact must
also be storable as PostgreSQL text: JSON can spell NUL ("\\u0000") and lone
surrogates ("\\ud800"), which a text column refuses, and one such fact would fail
the insert of every proposal of its exchange.
"""

from __future__ import annotations

import json
import re

from chat.metrics import proposals_discarded
from chat.runners.base import Turn

MAX_FACTS = 5
MAX_FACT_CHARS = 500
# A handful of one-sentence facts as JSON; more than this is a rambling model.
PROPOSAL_REPLY_TOKENS = 300

PROPOSAL_SYSTEM_TEXT = (
    "You read one exchange between a user and their assistant, Kimberly, and pick"
    " out durable facts about the user worth remembering: their preferences, the"
    " people in their life, their plans and their projects. Only what the user"
    " stated about themselves; not what the assistant said, not questions, not"
    " passing small talk. Write each fact as one short sentence about the user in"
    f" the third person. At most {MAX_FACTS} facts. Answer with JSON only, exactly"
    ' of this shape: {"facts": ["The user ...", ...]}; with no such fact, answer'
    ' {"facts": []}.'
)

_FENCED = re.compile(r"^```(?:json)?\s*(?P<body>.*?)\s*```$", re.DOTALL | re.IGNORECASE)


def proposal_messages(exchange: list[Turn]) -> list[dict[str, str]]:
    """The chat messages that ask for the facts of `exchange`."""
    names = {"user": "User", "assistant": "Kimberly"}
    transcript = "\n".join(f"{names[t.role]}: {t.content}" for t in exchange)
    return [
        {"role": "system", "content": PROPOSAL_SYSTEM_TEXT},
        {"role": "user", "content": transcript},
    ]


def parse_facts(text: str) -> list[str]:
    """The valid facts of a model's reply; every discard is counted by reason
    (not_json, wrong_shape: the whole reply; bad_item, too_many: per item)."""
    body = text.strip()
    fenced = _FENCED.match(body)
    if fenced:
        body = fenced.group("body")
    try:
        data = json.loads(body)
    except ValueError:
        proposals_discarded.labels(reason="not_json").inc()
        return []
    items = data.get("facts") if isinstance(data, dict) else None
    if not isinstance(items, list):
        proposals_discarded.labels(reason="wrong_shape").inc()
        return []
    facts: list[str] = []
    for item in items:
        if not _acceptable(item):
            proposals_discarded.labels(reason="bad_item").inc()
        elif len(facts) >= MAX_FACTS:
            proposals_discarded.labels(reason="too_many").inc()
        elif item.strip() not in facts:
            facts.append(item.strip())
    return facts


def _acceptable(item: object) -> bool:
    """A non-blank string of at most MAX_FACT_CHARS that PostgreSQL can store."""
    if not isinstance(item, str) or not item.strip() or len(item) > MAX_FACT_CHARS:
        return False
    # The rule of memory.metadata.storable, which chat may not import (chat
    # reaches memory only through memory.gateway).
    if "\x00" in item:
        return False
    try:
        item.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True
