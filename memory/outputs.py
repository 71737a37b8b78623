"""How a memory is shown outside: the same shape in the API (memory.apis) and
in the memory screen's export download (web.views.memory), so a file saved
from the screen reads like the API's answer."""

from __future__ import annotations

from typing import Any

from kimberly.api.serializers import iso_time
from memory.metadata import metadata_of
from memory.models import MemoryItem
from memory.services import BulkResult


def memory_out(item: MemoryItem) -> dict[str, Any]:
    """The public shape of a MemoryItem (SPEC 2.2); hand-built: it is on the hot path."""
    return {
        "id": item.public_id,
        "type": item.tier,
        "content": item.content,
        "size_bytes": item.size_bytes,
        "metadata": {**metadata_of(item), "version": item.version},
        "score": item.score,
        "embedding_ref": item.embedding_ref or None,
        "status": item.status,
        "protected": item.protected,
        "created_at": iso_time(item.created_at),
        "updated_at": iso_time(item.updated_at),
        "last_seen_at": iso_time(item.last_seen_at),
        "archived_at": iso_time(item.archived_at),
        "access_count": item.access_count,
        "audit": {"created_by": item.created_by, "consent": item.consent},
    }


def bulk_out(result: BulkResult) -> dict[str, Any]:
    """The answer to a bulk action (POST /v1/memory/bulk); an export carries
    the items themselves, their content opened for their owner."""
    body: dict[str, Any] = {
        "action": result.action,
        "requested": len(result.items),
        "changed": result.changed,
    }
    if result.action == "export":
        body["items"] = [memory_out(i) for i in result.items]
    return body
