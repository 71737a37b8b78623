"""Splitting a document's text into chunks of about ATTACHMENT_CHUNK_CHARS
characters, each one memory.

A chunk ends at a paragraph break where it can, else at a sentence end, else at
a space (a word longer than a chunk is cut). Each chunk after the first starts
with the last sentences of the one before, up to OVERLAP of the size, so a fact
split across a boundary is still whole in one of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

OVERLAP = 0.15

_PARAGRAPHS = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?…。])\s+")


@dataclass(frozen=True)
class _Piece:
    text: str
    sep: str  # what joins it to the piece before: "\n\n", "\n" or " "


def _pieces(text: str, size: int) -> list[_Piece]:
    """Sentences (or shorter), each with the separator that precedes it."""
    out: list[_Piece] = []
    for para in _PARAGRAPHS.split(text):
        for n, line in enumerate(para.split("\n")):
            sep = "\n\n" if n == 0 else "\n"
            for sentence in _SENTENCE_END.split(line.strip()):
                for part in _fit(sentence, size):
                    out.append(_Piece(part, sep))
                    sep = " "
    return [p for p in out if p.text]


def _fit(sentence: str, size: int) -> list[str]:
    """A sentence as one piece, or cut at spaces (or anywhere) into pieces of at
    most `size` characters."""
    if len(sentence) <= size:
        return [sentence]
    parts: list[str] = []
    current = ""
    for word in sentence.split():
        while len(word) > size:
            if current:
                parts.append(current)
                current = ""
            parts.append(word[:size])
            word = word[size:]
        if current and len(current) + 1 + len(word) > size:
            parts.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        parts.append(current)
    return parts


def _join(pieces: list[_Piece]) -> str:
    return "".join((p.sep if i else "") + p.text for i, p in enumerate(pieces)).strip()


def _length(pieces: list[_Piece]) -> int:
    return sum(len(p.text) + len(p.sep) for p in pieces)


def chunk_text(text: str, size: int) -> list[str]:
    """`text` in chunks of at most about `size` characters (see the module doc)."""
    overlap = int(size * OVERLAP)
    chunks: list[str] = []
    current: list[_Piece] = []
    fresh = 0  # pieces in `current` not already in the chunk before
    for piece in _pieces(text, size):
        if fresh and _length(current) + len(piece.sep) + len(piece.text) > size:
            chunks.append(_join(current))
            current = _tail(current, overlap)
            if _length(current) + len(piece.sep) + len(piece.text) > size:
                current = []
            fresh = 0
        current.append(piece)
        fresh += 1
    if fresh:
        chunks.append(_join(current))
    return chunks


def _tail(pieces: list[_Piece], budget: int) -> list[_Piece]:
    """The last pieces of a chunk that fit in `budget` characters."""
    tail: list[_Piece] = []
    used = 0
    for piece in reversed(pieces):
        used += len(piece.text) + len(piece.sep)
        if used > budget:
            break
        tail.insert(0, piece)
    return tail


def chunk_offsets(text: str, chunks: list[str]) -> list[int | None]:
    """Where each chunk starts in `text` (None if it cannot be found verbatim):
    the offset a citation of the chunk points at."""
    offsets: list[int | None] = []
    cursor = 0
    for chunk in chunks:
        at = text.find(chunk[:80], cursor)
        offsets.append(at if at >= 0 else None)
        if at >= 0:
            cursor = at + 1
    return offsets
