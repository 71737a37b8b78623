"""An import file → records: the format sniffed or given, every record checked.

Every format yields ImportRecords in file order. Structure is checked here, all
of it, before anything is stored: a malformed record anywhere is a 400
`invalid_import` naming the first one ({record, line?, field, reason}). Content
over the memory size limit, or with characters PostgreSQL cannot store, is not
malformed: such a record is refused with its reason when the import runs.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone

from kimberly.api.errors import ApplicationError, ValidationFailed
from memory.constants import Source
from memory.imports.models import MemoryImport
from memory.metadata import Metadata, validate_metadata, validate_tier

FORMATS = MemoryImport.Format.values
TRANSCRIPT_VERSION = 1
MAX_EXTERNAL_ID = 255
# A clock a little ahead of ours is fine; a date in the future is a broken file.
FUTURE_SLACK = timedelta(days=1)
JSON_FIELDS = frozenset({"content", "created_at", "tier", "metadata", "external_id"})


class InvalidImport(ApplicationError):
    code = "invalid_import"
    status = 400


def bad(
    field: str, reason: str, *, record: int | None = None, line: int | None = None
) -> InvalidImport:
    """The 400 naming the first bad record (None: the file as a whole)."""
    details: dict[str, Any] = {"record": record, "field": field, "reason": reason}
    if line is not None:
        details["line"] = line
    where = "the file" if record is None else f"record {record}"
    if line is not None:
        where += f" (line {line})"
    return InvalidImport(f"Invalid import: {where}: {field} {reason}", details=details)


@dataclass(frozen=True)
class ImportRecord:
    """One memory to import: its source position, identity, text and time."""

    index: int
    external_id: str
    content: str
    created_at: datetime
    tier: str
    metadata: Metadata
    line: int | None = None


@dataclass
class ParsedImport:
    format: str
    records: list[ImportRecord]
    skipped: dict[str, int] = field(default_factory=dict)


def parse_import(
    *, raw: bytes | None, data: Any, fmt: str | None, tier: str
) -> ParsedImport:
    """Records of a file (`raw` bytes) or of already-parsed JSON (`data`)."""
    tier = _tier(tier, field="tier", record=None)
    if fmt is not None and fmt not in FORMATS:
        raise bad("format", f"must be one of {', '.join(FORMATS)}")
    if raw is not None:
        fmt, data = _load_bytes(raw, fmt)
    else:
        fmt = fmt or sniff(data)
    if fmt == "kimberly":
        return transcript_records(_transcript_lines(data), tier)
    if not isinstance(data, list):
        raise bad("file", "must be a JSON list at the top level")
    if fmt == "chatgpt":
        from memory.imports.chatgpt import chatgpt_records

        return chatgpt_records(data, tier)
    return json_records(data, tier)


def sniff(data: Any) -> str:
    """The format of parsed JSON: a transcript header, ChatGPT's mapping, or a list."""
    if isinstance(data, str) and _looks_like_transcript(data):
        return "kimberly"
    first = data[0] if isinstance(data, list) and data else data
    if isinstance(first, dict) and "kimberly_transcript" in first:
        return "kimberly"
    if isinstance(first, dict) and "mapping" in first:
        return "chatgpt"
    if isinstance(data, list):
        return "json"
    raise bad("file", "must be a JSON list, or a transcript (JSON lines)")


def _load_bytes(raw: bytes, fmt: str | None) -> tuple[str, Any]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise bad("file", "is not UTF-8 text") from None
    if not text.strip():
        raise bad("file", "is empty")
    if fmt == "kimberly":
        return fmt, text
    try:
        data = _json(text)
    except ValueError as exc:
        if fmt is None and _looks_like_transcript(text):
            return "kimberly", text
        raise bad("file", f"is not JSON ({_short(exc)})") from None
    return fmt or sniff(data), data


def _looks_like_transcript(text: str) -> bool:
    try:
        header = _json(text.lstrip().split("\n", 1)[0])
    except ValueError:
        return False
    return isinstance(header, dict) and "kimberly_transcript" in header


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json(text: str) -> Any:
    return json.loads(text, parse_constant=_reject_constant)


def _short(exc: Exception) -> str:
    return str(exc)[:120]


# ---------------------------------------------------------------- field checks


def _tier(
    value: Any, *, field: str, record: int | None, line: int | None = None
) -> str:
    try:
        return validate_tier(value, field=field)
    except ValidationFailed:
        raise bad(
            field,
            "must be short-term, long-term or permanent",
            record=record,
            line=line,
        ) from None


def import_metadata(
    raw: Any, tags: list[str], *, record: int | None, line: int | None = None
) -> Metadata:
    """Canonical metadata of an imported item: source is always `import`."""
    patch: Any = raw if raw is not None else {"tags": tags}
    try:
        meta = validate_metadata(patch)
    except ValidationFailed as exc:
        fields = exc.details.get("fields", {})
        name, reasons = next(iter(fields.items()), ("metadata", [exc.message]))
        raise bad(str(name), str(reasons[0]), record=record, line=line) from None
    meta["source"] = Source.IMPORT.value
    return meta


def parse_time(
    value: Any, *, field: str, record: int, line: int | None = None
) -> datetime:
    """An ISO 8601 time with its offset (or Z), not in the future; as UTC."""
    if not isinstance(value, str):
        raise bad(field, "must be an ISO 8601 string", record=record, line=line)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise bad(field, "is not an ISO 8601 time", record=record, line=line) from None
    if when.tzinfo is None:
        raise bad(
            field, "needs a UTC offset (e.g. Z or +02:00)", record=record, line=line
        )
    return not_future(when.astimezone(UTC), field=field, record=record, line=line)


def not_future(
    when: datetime, *, field: str, record: int, line: int | None = None
) -> datetime:
    if when > timezone.now() + FUTURE_SLACK:
        raise bad(field, "is in the future", record=record, line=line)
    return when


def text_field(value: Any, *, field: str, record: int, line: int | None = None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise bad(field, "must be a non-empty string", record=record, line=line)
    return value


def external_id(value: str, *, field: str, record: int, line: int | None = None) -> str:
    if not value or len(value) > MAX_EXTERNAL_ID or "\x00" in value:
        raise bad(
            field, f"must be 1..{MAX_EXTERNAL_ID} characters", record=record, line=line
        )
    return value


# ---------------------------------------------------------------- JSON list


def json_records(data: list[Any], tier: str) -> ParsedImport:
    """A JSON list of {content, created_at, tier?, metadata?, external_id?}.

    Without an external_id, one is derived from the time and the text
    (`json:<sha256>`), so importing the same list twice stores nothing new; two
    entries with the same text at the same instant are the same memory.
    """
    records = []
    for n, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise bad("record", "must be an object", record=n)
        unknown = sorted(set(entry) - JSON_FIELDS)
        if unknown:
            raise bad(unknown[0], "is not a known field", record=n)
        if "content" not in entry:
            raise bad("content", "is missing", record=n)
        content = text_field(entry["content"], field="content", record=n)
        if "created_at" not in entry:
            raise bad("created_at", "is missing", record=n)
        when = parse_time(entry["created_at"], field="created_at", record=n)
        item_tier = tier
        if entry.get("tier") is not None:
            item_tier = _tier(entry["tier"], field="tier", record=n)
        meta = import_metadata(entry.get("metadata"), [], record=n)
        ext = entry.get("external_id")
        if ext is None:
            digest = hashlib.sha256(
                f"{when.isoformat()}\n{content}".encode("utf-8", "surrogatepass")
            )
            ext = f"json:{digest.hexdigest()}"
        elif not isinstance(ext, str):
            raise bad("external_id", "must be a string", record=n)
        ext = external_id(ext, field="external_id", record=n)
        records.append(ImportRecord(n, ext, content, when, item_tier, meta))
    return ParsedImport("json", records)


# ---------------------------------------------------------------- transcripts


def _transcript_lines(data: Any) -> list[tuple[int, Any]]:
    """(line number, parsed line) of JSON lines text, or of a list of the lines."""
    if isinstance(data, list):
        return [(n + 1, obj) for n, obj in enumerate(data)]
    if not isinstance(data, str):
        raise bad("file", "must be JSON lines, or a list of the lines")
    out = []
    # split("\n"), not splitlines(): JSON text may hold a raw U+2028 in a string.
    for n, text in enumerate(data.split("\n"), start=1):
        if not text.strip():
            continue
        try:
            out.append((n, _json(text)))
        except ValueError as exc:
            record = len(out) - 1 if out else None  # line 1 is the header
            raise bad(
                "line", f"is not JSON ({_short(exc)})", record=record, line=n
            ) from None
    return out


def transcript_records(lines: list[tuple[int, Any]], tier: str) -> ParsedImport:
    """Our transcript: a header line, then one line per message; user messages
    become memories (`kimberly:<msg id>`, tags import and transcript)."""
    if not lines:
        raise bad("header", "is missing", line=1)
    line_no, header = lines[0]
    if not isinstance(header, dict) or "kimberly_transcript" not in header:
        raise bad("header", "is missing (kimberly_transcript)", line=line_no)
    if header["kimberly_transcript"] != TRANSCRIPT_VERSION:
        raise bad(
            "kimberly_transcript", f"must be version {TRANSCRIPT_VERSION}", line=line_no
        )
    records: list[ImportRecord] = []
    skipped: Counter[str] = Counter()
    meta = import_metadata(None, ["import", "transcript"], record=None)
    for n, (line, msg) in enumerate(lines[1:]):
        if not isinstance(msg, dict):
            raise bad("line", "must be an object", record=n, line=line)
        role = msg.get("role")
        if role not in ("user", "assistant"):
            raise bad("role", "must be user or assistant", record=n, line=line)
        msg_id = msg.get("id")
        if not isinstance(msg_id, str) or not msg_id.startswith("msg_"):
            raise bad("id", "must be msg_<uuid>", record=n, line=line)
        content = text_field(msg.get("content"), field="content", record=n, line=line)
        when = parse_time(
            msg.get("created_at"), field="created_at", record=n, line=line
        )
        if role != "user":
            skipped["assistant_message"] += 1
            continue
        ext = external_id(f"kimberly:{msg_id}", field="id", record=n, line=line)
        records.append(ImportRecord(n, ext, content, when, tier, meta, line=line))
    return ParsedImport("kimberly", records, dict(skipped))
