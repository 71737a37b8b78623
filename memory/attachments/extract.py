"""What an uploaded file is, decided from its bytes (never from its name or the
declared Content-Type), and its text.

PDF: the `%PDF-` magic, text by pypdf. Anything else must be UTF-8 text without
NUL or other binary control characters (a PNG, zip or executable is 415); HTML
is recognised by its content (a doctype, an <html> element, or markup through
and through) and read without tags, scripts or styles; the name's extension only
tells Markdown from plain text, and both are kept as written.
"""

from __future__ import annotations

import io
import logging
import re
import unicodedata
from dataclasses import dataclass
from html.parser import HTMLParser

from django.conf import settings

from kimberly.api.errors import ApplicationError

logger = logging.getLogger(__name__)


class UnsupportedMediaType(ApplicationError):
    code = "unsupported_media_type"
    status = 415


class EmptyDocument(ApplicationError):
    code = "empty_document"
    status = 400


class InvalidDocument(ApplicationError):
    code = "invalid_document"
    status = 400


class DocumentTooLarge(ApplicationError):
    """More text (or PDF pages) than one attachment may hold: a small compressed
    PDF can expand into megabytes of text, so the bytes alone do not bound it."""

    code = "document_too_large"
    status = 413


def _text_limit_hit(chars: int) -> DocumentTooLarge:
    limit = settings.ATTACHMENT_MAX_TEXT_CHARS
    return DocumentTooLarge(
        f"This document holds more than {limit} characters of text.",
        details={"max_text_chars": limit, "text_chars_at_least": chars},
    )


@dataclass(frozen=True)
class Kind:
    name: str  # the metrics label and the API's `type`
    content_type: str  # stored with the object, shown to the user
    ext: str  # of the object key


PDF = Kind("pdf", "application/pdf", ".pdf")
HTML = Kind("html", "text/html; charset=utf-8", ".html")
MARKDOWN = Kind("markdown", "text/markdown; charset=utf-8", ".md")
TEXT = Kind("text", "text/plain; charset=utf-8", ".txt")
KINDS = (PDF, HTML, MARKDOWN, TEXT)
KIND_NAMES = tuple(k.name for k in KINDS)


def kind_of(content_type: str) -> str:
    """The kind's name of a stored content type ("unknown" if none matches)."""
    return next((k.name for k in KINDS if k.content_type == content_type), "unknown")


MARKDOWN_EXTENSIONS = (".md", ".markdown", ".mdown", ".mkd")


@dataclass(frozen=True)
class Extracted:
    kind: Kind
    text: str


def extract(data: bytes, filename: str) -> Extracted:
    """The kind and the text of an upload, or a 400/415 that names what is wrong."""
    if not data:
        raise EmptyDocument("The file is empty.")
    if data.startswith(b"%PDF-"):
        return _finish(PDF, _pdf_text(data))
    text = _decode_text(data)
    if _looks_like_html(text):
        return _finish(HTML, html_text(text))
    kind = MARKDOWN if filename.lower().endswith(MARKDOWN_EXTENSIONS) else TEXT
    return _finish(kind, text)


def _finish(kind: Kind, text: str) -> Extracted:
    if len(text) > settings.ATTACHMENT_MAX_TEXT_CHARS:
        raise _text_limit_hit(len(text))
    text = normalize(text)
    if not text:
        raise EmptyDocument(
            f"No text could be read from this {kind.name} file.",
            details={"type": kind.name},
        )
    return Extracted(kind, text)


# Control characters no text file holds (tab, newline, vertical tab, form feed,
# CR and ESC it may).
_BINARY = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")


def _decode_text(data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _unsupported("it is neither a PDF nor UTF-8 text") from None
    if _BINARY.search(text):
        raise _unsupported("it holds binary control characters (NUL, ...)")
    return text


def _unsupported(why: str) -> UnsupportedMediaType:
    return UnsupportedMediaType(
        f"Unsupported file: {why}. Send text, Markdown, HTML or PDF.",
        details={"supported": list(KIND_NAMES)},
    )


_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)\b[^<>]*>")
_HTML_ELEMENT_NAMES = (
    "a abbr article aside b blockquote body br caption code dd div dl dt em "
    "footer h1 h2 h3 h4 h5 h6 head header hr html i img li link main meta nav "
    "ol p pre script section span strong style table tbody td th thead title tr "
    "u ul"
)
_HTML_ELEMENTS = frozenset(_HTML_ELEMENT_NAMES.split())


def _looks_like_html(text: str) -> bool:
    """A doctype or <html> at the start (after comments or an XML prolog), or
    text that is markup through and through (starts with a tag, mostly tags)."""
    head = text[:4096].lstrip().lower()
    if not head.startswith("<"):
        return False
    if head.startswith("<!doctype html") or re.match(
        r"(<\?xml[^>]*>\s*|<!--.*?-->\s*)*<html[\s>]", head, re.DOTALL
    ):
        return True
    tags = [m for m in _TAG.finditer(head) if m.group(2) in _HTML_ELEMENTS]
    markup = sum(len(m.group(0)) for m in tags)
    return len(tags) >= 3 and markup >= 0.2 * len(head)


# Elements whose content is not text a reader sees.
# HTML collapses ASCII whitespace only (a no-break space stays).
_HTML_SPACE = re.compile(r"[ \t\n\f\r]+")
_SKIPPED = frozenset({"script", "style", "template", "noscript", "svg"})
_BLOCK_NAMES = (
    "address article aside blockquote br dd div dl dt fieldset figcaption "
    "figure footer form h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre "
    "section table tbody td tfoot th thead title tr ul"
)
_BLOCKS = frozenset(_BLOCK_NAMES.split())


class _TextParser(HTMLParser):
    """Visible text: skipped elements dropped, blocks on their own lines,
    inline whitespace collapsed (except inside <pre>), entities decoded."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip: list[str] = []  # open skipped elements
        self.pre = 0
        self.title: list[str] = []
        self.in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self.in_title = True
        elif tag in _SKIPPED:
            self.skip.append(tag)
        if tag == "pre":
            self.pre += 1
        if tag in _BLOCKS:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        elif tag in self.skip:
            # Close it and anything left open inside it (HTML forgives that).
            del self.skip[len(self.skip) - 1 - self.skip[::-1].index(tag) :]
        if tag == "pre":
            self.pre = max(0, self.pre - 1)
        if tag in _BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
        elif not self.skip:
            self.parts.append(data if self.pre else _HTML_SPACE.sub(" ", data))


def html_text(html: str) -> str:
    """The text a reader of the page sees (its title first), without markup."""
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    title = " ".join("".join(parser.title).split())
    body = "".join(parser.parts)
    return f"{title}\n\n{body}" if title else body


def _pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    # pypdf raises many kinds of errors on a damaged file (its own, ValueError,
    # KeyError, struct.error, ...): any of them means we cannot read this PDF.
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise InvalidDocument("This PDF is encrypted with a password.")
        if len(reader.pages) > settings.ATTACHMENT_MAX_PDF_PAGES:
            raise DocumentTooLarge(
                f"This PDF has more than {settings.ATTACHMENT_MAX_PDF_PAGES} pages.",
                details={"max_pages": settings.ATTACHMENT_MAX_PDF_PAGES},
            )
        pages: list[str] = []
        chars = 0
        for page in reader.pages:  # stop as soon as the text passes the limit
            pages.append(page.extract_text() or "")
            chars += len(pages[-1])
            if chars > settings.ATTACHMENT_MAX_TEXT_CHARS:
                raise _text_limit_hit(chars)
    except ApplicationError:
        raise
    except Exception as exc:  # noqa: BLE001 - see above
        # The class only: a parser's message can quote the file's bytes.
        logger.info("unreadable PDF upload: %s", type(exc).__name__)
        raise InvalidDocument(
            "This PDF cannot be read (it is damaged or not a PDF).",
            details={"type": PDF.name},
        ) from None
    return "\n\n".join(pages)


# Control characters (C0 but tab and newline, DEL, C1) and lone surrogates: PDF
# text may hold them, and PostgreSQL text cannot hold NUL.
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_SPACES_BEFORE_NEWLINE = re.compile(r"[ \t]+\n")
_BLANK_LINES = re.compile(r"\n{3,}")


def normalize(text: str) -> str:
    """NFC, newlines as \\n (a form feed is a paragraph break), no control
    characters, no trailing spaces, at most one blank line in a row; "" when
    nothing is left."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x0b", "\n")
    text = _CONTROLS.sub(" ", text.replace("\x0c", "\n\n"))
    text = unicodedata.normalize("NFC", text)
    text = _SPACES_BEFORE_NEWLINE.sub("\n", text + "\n")
    return _BLANK_LINES.sub("\n\n", text).strip()
