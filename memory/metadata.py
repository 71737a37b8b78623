"""The shape of a memory as users send and see it (tier, content, metadata) and
its quota size: the one definition, used by the write path, the API and the SQL
that snapshots history."""

from __future__ import annotations

import json
from typing import Any, TypedDict, cast

from kimberly.api.errors import ApplicationError, invalid_field
from memory.constants import (
    FEEDBACK_VALUES,
    MAX_CHANNELS,
    MAX_CONTENT_BYTES,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    Scope,
    Source,
    Tier,
)
from memory.models import MemoryItem


class ContentTooLarge(ApplicationError):
    code = "content_too_large"
    status = 413


# The metadata shape, once: every key with its default, in the order it is shown.
# Each key is a MemoryItem column of the same name; user_feedback is stored as ""
# when unset and shown as null.
class Metadata(TypedDict):
    """Canonical metadata: every key, as stored (and shown, with the version)."""

    tags: list[str]
    source: str
    channels: list[str]
    sensitive: bool
    scope: str
    user_feedback: str | None


class MetadataPatch(TypedDict, total=False):
    """The metadata keys a caller sends; the others keep their value (or default).

    Raw JSON reaches validate_metadata unchecked: a wrong type there is a 400."""

    tags: list[str]
    source: str
    channels: list[str]
    sensitive: bool
    scope: str
    user_feedback: str | None
    version: int


DEFAULT_METADATA: Metadata = {
    "tags": [],
    "source": Source.API.value,
    "channels": [],
    "sensitive": False,
    "scope": Scope.PRIVATE.value,
    "user_feedback": None,
}
METADATA_KEYS = frozenset(DEFAULT_METADATA)
_BLANK_AS_NULL = frozenset({"user_feedback"})


def validate_tier(tier: Any, field: str = "type") -> str:
    if tier not in Tier.values:
        raise invalid_field(field, f"must be one of {', '.join(Tier.values)}")
    return str(tier)


def validate_content(content: Any) -> str:
    if not isinstance(content, str) or not content.strip():
        raise invalid_field("content", "must be a non-empty string")
    size = len(content.encode("utf-8"))
    if size > MAX_CONTENT_BYTES:
        raise ContentTooLarge(
            f"content is {size} bytes; the limit is {MAX_CONTENT_BYTES}.",
            details={"size_bytes": size, "max_bytes": MAX_CONTENT_BYTES},
        )
    return content


def string_list(raw: Any, field: str, max_items: int) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw):
        raise invalid_field(field, "must be a list of strings")
    out: list[str] = []
    for value in (t.strip() for t in raw):
        if not value or len(value) > MAX_TAG_LENGTH:
            raise invalid_field(
                field, f"each entry must be 1..{MAX_TAG_LENGTH} characters"
            )
        if not storable(value):
            raise invalid_field(
                field,
                "contains characters that cannot be stored (NUL or lone surrogate)",
            )
        if value not in out:
            out.append(value)
    if len(out) > max_items:
        raise invalid_field(field, f"at most {max_items} entries")
    return out


def storable(text: str) -> bool:
    """PostgreSQL text cannot hold NUL, and UTF-8 cannot hold lone surrogates."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def validate_metadata(
    raw: MetadataPatch | None, *, base: Metadata | None = None
) -> Metadata:
    """Full canonical metadata: `raw` keys validated and laid over `base` (or defaults)."""
    raw_any: Any = raw if raw is not None else {}
    if not isinstance(raw_any, dict):
        raise invalid_field("metadata", "must be an object")
    patch: dict[str, Any] = raw_any
    unknown = sorted(set(patch) - METADATA_KEYS - {"version"})
    if unknown:
        raise invalid_field("metadata", f"unknown keys: {', '.join(unknown)}")
    meta: dict[str, Any] = {
        k: list(v) if isinstance(v, list) else v
        for k, v in (base or DEFAULT_METADATA).items()
    }
    if "tags" in patch:
        meta["tags"] = string_list(patch["tags"], "metadata.tags", MAX_TAGS)
    if "channels" in patch:
        meta["channels"] = string_list(
            patch["channels"], "metadata.channels", MAX_CHANNELS
        )
    for key, choices in (("source", Source.values), ("scope", Scope.values)):
        if key in patch:
            if patch[key] not in choices:
                raise invalid_field(
                    f"metadata.{key}", f"must be one of {', '.join(choices)}"
                )
            meta[key] = patch[key]
    if "sensitive" in patch:
        if not isinstance(patch["sensitive"], bool):
            raise invalid_field("metadata.sensitive", "must be true or false")
        meta["sensitive"] = patch["sensitive"]
    if "user_feedback" in patch:
        fb = patch["user_feedback"]
        if fb is not None and fb not in FEEDBACK_VALUES:
            raise invalid_field(
                "metadata.user_feedback",
                "must be thumbs_up, thumbs_down or rating:1..5",
            )
        meta["user_feedback"] = fb
    return cast(Metadata, meta)


def metadata_of(item: MemoryItem) -> Metadata:
    """The item's user-facing metadata (without the system-managed version)."""
    meta: dict[str, Any] = {}
    for key, default in DEFAULT_METADATA.items():
        value = getattr(item, key)
        if isinstance(default, list):
            value = list(value)
        elif key in _BLANK_AS_NULL:
            value = value or None
        meta[key] = value
    return cast(Metadata, meta)


def apply_metadata(item: MemoryItem, meta: Metadata) -> None:
    """Set the item's metadata columns from canonical metadata."""
    for key, value in meta.items():
        setattr(item, key, (value or "") if key in _BLANK_AS_NULL else value)


def metadata_sql(alias: str) -> str:
    """SQL building the same JSON as metadata_of (plus version) from row `alias`."""
    pairs = [
        f"'{key}', NULLIF({alias}.{key}, '')"
        if key in _BLANK_AS_NULL
        else f"'{key}', {alias}.{key}"
        for key in DEFAULT_METADATA
    ]
    return f"jsonb_build_object({', '.join(pairs)}, 'version', {alias}.version)"


def item_size(content: str, metadata: Metadata) -> int:
    """Quota size: UTF-8 bytes of content + bytes of the canonical metadata JSON."""
    meta_json = json.dumps(
        metadata, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return len(content.encode("utf-8")) + len(meta_json.encode("utf-8"))
