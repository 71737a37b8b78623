"""Memory content sealed at rest: which rows are, and the one way their text is read.

A sensitive item (every item, with SEAL_ALL_CONTENT) keeps its text only as
AES-256-GCM ciphertext under its user's data key (users.keys) in `sealed`;
its `content` column holds "" so the generated full-text column indexes
nothing of it. In Python nothing changes for readers: `MemoryItem.from_db`
opens the ciphertext into `.content` as the row is loaded, and `save()`
seals `.content` again on the way out (SealedContent below). Raw SQL and bulk
writes go through `stored()`; versions, which carry no user id, are opened
by their readers with `open_versions()`.

What search sees of a sealed item: no words (no tsvector, no `q=` match, no
SQL duplicate check): it is found by vector similarity, by id, tags and the
other filters. Its vector is derived from the plaintext, so a sealed
*sensitive* item has one only while the user's `model_context` consent
stands (memory.services.sealing keeps that true); a non-sensitive item
sealed by SEAL_ALL_CONTENT is embedded as any other.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.conf import settings

from users import keys

if TYPE_CHECKING:
    from memory.models import MemoryVersion

logger = logging.getLogger(__name__)


def wanted(sensitive: bool) -> bool:
    """Whether an item (or a version) of this sensitivity is kept sealed."""
    return bool(sensitive or settings.SEAL_ALL_CONTENT)


def stored(user_id: Any, text: str, sensitive: bool) -> tuple[str, bytes | None]:
    """What a row holds for `text`: ("", ciphertext) sealed, (text, None) plain."""
    if wanted(sensitive):
        return "", keys.seal(user_id, text)
    return text, None


def opened(user_id: Any, blob: bytes | memoryview) -> str:
    """The plaintext of a sealed column; "" (logged) when the key is gone, as
    during an erasure, so that deleting the rows still works."""
    try:
        return keys.unseal(user_id, bytes(blob))
    except keys.KeyUnavailable:
        logger.warning("a sealed memory of user %s does not open", user_id)
        return ""


def open_versions(
    user_id: uuid.UUID, versions: Iterable[MemoryVersion]
) -> list[MemoryVersion]:
    """`versions` with their text opened in place (they are sealed with their
    item's user's key, which a version row does not name)."""
    out = list(versions)
    for v in out:
        if v.sealed is not None:
            v.content = opened(user_id, v.sealed)
    return out


class SealedContent:
    """MemoryItem's half of sealing: plaintext `.content` in Python, sealed row."""

    content: str
    sealed: bytes | None
    sensitive: bool
    user_id: Any

    @classmethod
    def from_db(cls, db: Any, field_names: Any, values: Any) -> Any:
        instance = super().from_db(db, field_names, values)  # type: ignore[misc]
        loaded = instance.__dict__
        if "content" in loaded and loaded["content"] == "" and "sealed" not in loaded:
            # Only a sealed row has "" content: fetch the ciphertext it needs.
            instance.refresh_from_db(fields=["sealed"])
        if loaded.get("sealed") is not None and "content" in loaded:
            instance.content = opened(instance.user_id, loaded["sealed"])
        return instance

    def save(self, *args: Any, **kwargs: Any) -> None:
        fields = kwargs.get("update_fields")
        if fields is not None and not {"content", "sensitive", "sealed"} & set(fields):
            super().save(*args, **kwargs)  # type: ignore[misc]
            return
        plain = self.content
        self.content, self.sealed = stored(self.user_id, plain, self.sensitive)
        if fields is not None:
            kwargs["update_fields"] = {*fields, "content", "sealed", "sensitive"}
        try:
            super().save(*args, **kwargs)  # type: ignore[misc]
        finally:
            self.content = plain
