"""Transcripts in the embedded S3, and memories proposed after an exchange."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
from prometheus_client import REGISTRY

from chat.models import Message
from chat.proposals import proposals_from_reply
from chat.tasks import delete_transcript, write_transcript
from chat.transcripts import transcript_key
from kimberly import storage
from memory.models import MemoryItem, MemoryProposal
from tests.standins.openai_server import Behaviour

pytestmark = pytest.mark.django_db(transaction=True)


def _chat(client: Any, message: str, **extra: Any) -> Any:
    r = client.post("/v1/chat", {"message": message, **extra}, format="json")
    assert r.status_code == 200, r.content
    return r.json()


def test_the_transcript_is_kept_in_object_storage_and_downloadable(
    alice: Any, alice_api: Any
) -> None:
    conv = _chat(alice_api, "First line")["conversation_id"]
    _chat(alice_api, "Second line", conversation_id=conv)
    link = alice_api.get(f"/v1/chat/conversations/{conv}/transcript").json()
    assert link["messages"] == 4 and link["expires_in"] > 0
    with urllib.request.urlopen(link["download_url"], timeout=10) as resp:
        lines = [json.loads(x) for x in resp.read().decode().splitlines()]
    assert lines[0]["kimberly_transcript"] == 1
    assert lines[0]["conversation_id"] == conv
    assert [(x["role"], x["content"]) for x in lines[1:] if x["role"] == "user"] == [
        ("user", "First line"),
        ("user", "Second line"),
    ]
    assert all("context" in x for x in lines[1:] if x["role"] == "assistant")


def test_the_background_write_keeps_the_object_current_and_delete_removes_it(
    alice: Any, alice_api: Any
) -> None:
    conv = _chat(alice_api, "Keep me")["conversation_id"]
    key = transcript_key(alice.pk, conv)
    assert write_transcript(conv[5:]) is True
    assert b"Keep me" in storage.read_bytes(key)
    assert alice_api.delete(f"/v1/chat/conversations/{conv}").status_code == 204
    delete_transcript(key)  # what the on-commit task does
    assert write_transcript(conv[5:]) is False  # gone: nothing written again
    with pytest.raises(storage.ObjectNotFound):
        storage.read_bytes(key)


def _discarded(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "kimberly_memory_proposals_discarded_total", {"reason": reason}
    )
    return value or 0.0


def test_the_model_proposes_memories_and_the_user_decides(
    alice: Any, alice_api: Any, with_llm: Any
) -> None:
    with_llm.script(
        Behaviour(reply="Nice! Hiking is a great hobby."),
        Behaviour(reply='{"facts": ["Alice loves hiking in the Alps"]}'),
    )
    body = _chat(alice_api, "I love hiking in the Alps")
    reply_id = Message.objects.get(role="assistant").pk
    assert proposals_from_reply(reply_id=reply_id) == 1
    (p,) = MemoryProposal.objects.filter(user=alice)
    assert (p.content, p.origin, p.status) == (
        "Alice loves hiking in the Alps",
        body["message"]["id"],
        "pending",
    )
    assert not MemoryItem.objects.filter(user=alice).exists()
    r = alice_api.post(f"/v1/memory/proposals/{p.public_id}/accept")
    assert r.status_code == 200
    assert MemoryItem.objects.get(user=alice).tier == "long-term"


def test_malformed_proposals_are_discarded_and_counted_never_stored(
    alice: Any, alice_api: Any, with_llm: Any
) -> None:
    with_llm.script(Behaviour(reply="Sure."), Behaviour(reply="facts: hiking!!"))
    _chat(alice_api, "I love hiking")
    before = _discarded("not_json")
    assert proposals_from_reply(reply_id=Message.objects.get(role="assistant").pk) == 0
    assert _discarded("not_json") == before + 1
    assert not MemoryProposal.objects.exists()


def test_the_offline_runner_proposes_nothing(alice: Any, alice_api: Any) -> None:
    _chat(alice_api, "I love hiking")
    assert proposals_from_reply(reply_id=Message.objects.get(role="assistant").pk) == 0
