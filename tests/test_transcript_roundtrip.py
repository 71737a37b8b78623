"""A chat transcript downloaded from Kimberly imports back with its original times."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from chat.models import Message
from memory.models import MemoryItem

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_downloaded_transcript_imports_back_once_with_its_times(
    alice: Any, alice_api: Any, bob_api: Any
) -> None:
    first = alice_api.post("/v1/chat", {"message": "I grow tomatoes"}, format="json")
    conv = first.json()["conversation_id"]
    alice_api.post(
        "/v1/chat",
        {"message": "and basil", "conversation_id": conv},
        format="json",
    )
    link = alice_api.get(f"/v1/chat/conversations/{conv}/transcript").json()
    with urllib.request.urlopen(link["download_url"], timeout=10) as resp:
        data = resp.read()

    def upload(client: Any) -> Any:
        file = SimpleUploadedFile("t.jsonl", data, "application/x-ndjson")
        return client.post("/v1/memory/import", {"file": file}, format="multipart")

    done = upload(alice_api).json()
    assert (done["format"], done["imported"]) == ("kimberly", 2)
    said = {m.content: m.created_at for m in Message.objects.filter(role="user")}
    items = MemoryItem.objects.filter(user=alice, source="import")
    assert {i.content: i.created_at for i in items} == said
    assert upload(alice_api).json()["skipped_duplicate"] == 2
    # Bob importing Alice's file gets his own copies, not hers.
    assert upload(bob_api).json()["imported"] == 2
    assert items.count() == 2
