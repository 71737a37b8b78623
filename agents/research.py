"""The researcher's rules without a model: a question split into retrieval
queries, and findings laid out as a plain-text digest with citations.

Each sub-query is meant to be a good query over the user's memories (hybrid
vector and keyword search), so the splitter removes what carries no meaning
for retrieval ("tell me", "what do I know about", "please") and cuts at
question marks, semicolons, "also", bullet lines and "and" between clauses.
When a one-line question splits into several parts and is itself short (at
most WHOLE_QUESTION_MAX_WORDS words), the whole question comes first: it keeps
the link between the parts ("Anna's trip and its cost") that the pieces lose,
while a long question as one query would be too diluted to match anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

WHOLE_QUESTION_MAX_WORDS = 12
MAX_SUB_QUERY_CHARS = 300
FINDINGS_PER_QUERY = 3
SNIPPET_CHARS = 240
NOTHING_FOUND = "nothing found in your memories"

_BULLET_RE = re.compile(r"^\s*(?:[-*•‣◦]|\d{1,2}[.)])\s+")
# "also" and ", and" always start a new part; a bare "and" only between
# clauses (see _split_and).
_CUT_RE = re.compile(r"[?;]+|\s*\b(?:and\s+)?also\b\s*|,\s*and\s+", re.I)
_AND_RE = re.compile(r"\s+and\s+", re.I)
_QUESTION_WORD_RE = re.compile(
    r"^(?:what|when|where|who|whom|whose|why|how|which|did|do|does|is|are|was|were"
    r"|can|could|should|has|have|had|will|would)\b",
    re.I,
)
_FILLER_RE = re.compile(
    r"^(?:(?:please|kindly|hey|hi|ok(?:ay)?|so|now|then|and|but|or)\b[\s,]*"
    r"|(?:can|could|would|will)\s+you\s+(?:please\s+)?"
    r"|(?:tell|show|give)\s+me\s+(?:(?:everything|all|what|anything)\s+)?"
    r"(?:(?:you|i)\s+(?:know|have|find)\s+)?(?:about|on|regarding)?\s*"
    r"|what\s+do\s+(?:i|you|we)\s+(?:know|have)\s+(?:about|on|regarding)\s+"
    r"|(?:do\s+)?research(?:\s+(?:about|on|into))?\s+"
    r"|(?:find|look)\s+(?:out|up)?\s*(?:everything|anything|all|what\s+i\s+know)?"
    r"\s*(?:about|on|regarding)?\s+"
    r"|search(?:\s+(?:my\s+)?(?:memories|notes|documents))?\s+(?:for|about)\s+"
    r"|i\s+(?:want|would\s+like|need)\s+to\s+know\s+(?:about\s+)?"
    r"|everything\s+(?:about|on)\s+)",
    re.I,
)
_TRAILING_FILLER_RE = re.compile(
    r"(?:[\s,]+(?:please|thanks|thank\s+you|for\s+me))+$", re.I
)
# Words that alone make no query ("research?", "tell me please").
_STOPWORD_TEXT = (
    "a an the and or of to in on at for about me my i you it is are was what how "
    "please also this that these those research tell know find search everything "
    "anything"
)
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


@dataclass(frozen=True)
class Finding:
    """One retrieved passage for a sub-query, with its citation number."""

    sub_query: str
    citation: int
    text: str
    memory_id: str
    attachment_id: str | None
    offset: int | None
    score: float


def _strip_filler(part: str) -> str:
    part = part.strip(" \t,.:!-")
    while True:
        stripped = _FILLER_RE.sub("", part, count=1).strip(" \t,.:!-")
        if stripped == part:
            break
        part = stripped
    return _TRAILING_FILLER_RE.sub("", part).strip(" \t,.:!-")


def _meaningful(part: str) -> bool:
    words = re.findall(r"\w+", part.lower())
    return any(w not in _STOPWORDS for w in words)


def _split_and(part: str) -> list[str]:
    """Cut at "and" only between clauses: the right side is a question ("and
    when is the flight") or both sides have at least three words; "cats and
    dogs" stays one query."""
    pieces = _AND_RE.split(part)
    out = [pieces[0]]
    for piece in pieces[1:]:
        left_words = len(out[-1].split())
        if _QUESTION_WORD_RE.match(piece) or (
            left_words >= 3 and len(piece.split()) >= 3
        ):
            out.append(piece)
        else:
            out[-1] = f"{out[-1]} and {piece}"
    return out


def _parts(text: str) -> list[str]:
    parts: list[str] = []
    for line in text.splitlines():
        line = _BULLET_RE.sub("", line)
        for chunk in _CUT_RE.split(line):
            parts.extend(_split_and(_strip_filler(chunk)))
    return parts


def _clean(part: str) -> str:
    part = re.sub(r"\s+", " ", _strip_filler(part))
    return part[:MAX_SUB_QUERY_CHARS].strip()


def split_question(text: str, *, max_parts: int = 5) -> list[str]:
    """The research question as at most `max_parts` retrieval queries, in order,
    without filler or duplicates; the whole question first when it splits and
    is short. [] when nothing meaningful is left."""
    parts = [p for p in (_clean(p) for p in _parts(text)) if _meaningful(p)]
    lines = [line for line in text.splitlines() if line.strip()]
    whole = _clean(lines[0]).rstrip("?;").strip() if len(lines) == 1 else ""
    if len(parts) > 1 and 0 < len(whole.split()) <= WHOLE_QUESTION_MAX_WORDS:
        parts.insert(0, whole)
    seen: set[str] = set()
    out: list[str] = []
    for part in parts:
        key = re.sub(r"\W+", " ", part.lower()).strip()
        if key and key not in seen:
            seen.add(key)
            out.append(part)
    return out[:max_parts]


def _snippet(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) <= SNIPPET_CHARS:
        return text
    return text[: SNIPPET_CHARS - 1].rsplit(" ", 1)[0] + "…"


def _source(finding: Finding) -> str:
    where = f"memory {finding.memory_id}"
    if finding.attachment_id is not None:
        where += f", attachment {finding.attachment_id}"
        if finding.offset is not None:
            where += f" at offset {finding.offset}"
    return f"[{finding.citation}] {where}"


def digest(
    question: str, findings: list[Finding], *, per_query: int = FINDINGS_PER_QUERY
) -> str:
    """A plain-text digest: per sub-query (those of split_question, then any
    other the findings name) its best `per_query` findings as bullets with their
    citation markers, or NOTHING_FOUND; then the cited sources."""
    by_query: dict[str, list[Finding]] = {q: [] for q in split_question(question)}
    for finding in findings:
        by_query.setdefault(finding.sub_query, []).append(finding)
    heading = re.sub(r"\s+", " ", question).strip()
    lines = [f"Research: {heading}", ""]
    cited: dict[int, Finding] = {}
    for number, (sub_query, found) in enumerate(by_query.items(), start=1):
        lines.append(f"{number}. {sub_query}")
        best = sorted(found, key=lambda f: (-f.score, f.citation))[:per_query]
        if not best:
            lines.append(f"   {NOTHING_FOUND}")
        for finding in best:
            lines.append(f"   - {_snippet(finding.text)} [{finding.citation}]")
            cited.setdefault(finding.citation, finding)
        lines.append("")
    if cited:
        lines.append("Sources:")
        lines.extend(_source(cited[c]) for c in sorted(cited))
    return "\n".join(lines).rstrip() + "\n"
