"""Chat under races and failures: deletes mid-answer, broker or model down, stale
writers, retries, and memories that stop being shareable."""

from __future__ import annotations

import itertools
import json
import urllib.request
from typing import Any

import pytest
from kombu.exceptions import OperationalError as KombuOperationalError

from audit.models import AuditEvent
from chat import tasks, transcripts
from chat.models import Conversation, Message
from chat.runners.offline import OfflineRunner
from chat.selectors import WITHHELD_REPLY
from chat.transcripts import transcript_key
from kimberly import storage
from memory.models import MemoryProposal
from memory.services.proposals import proposals_create
from memory.tests.factories import ctx_for, grant, memory_for
from tests.standins.openai_server import Behaviour

pytestmark = pytest.mark.django_db(transaction=True)


def _chat(client: Any, message: str, **extra: Any) -> Any:
    return client.post("/v1/chat", {"message": message, **extra}, format="json")


def _delete_while_answering(monkeypatch: Any, conv: str, stream: bool) -> None:
    method = "reply_stream" if stream else "reply"
    real = getattr(OfflineRunner, method)

    def answer(self: Any, prompt: Any) -> Any:
        # The user deletes the conversation in another tab while the model runs.
        Conversation.objects.filter(pk=conv[5:]).delete()
        return real(self, prompt)

    monkeypatch.setattr(OfflineRunner, method, answer)


def test_a_conversation_deleted_while_kimberly_answers_is_409(
    alice_api: Any, monkeypatch: Any
) -> None:
    conv = _chat(alice_api, "first").json()["conversation_id"]
    _delete_while_answering(monkeypatch, conv, stream=False)
    r = _chat(alice_api, "second", conversation_id=conv)
    assert (r.status_code, r.json()["error"]) == (409, "conversation_deleted")
    assert not Message.objects.exists()


def test_a_stream_whose_conversation_is_deleted_ends_with_an_error_event(
    alice_api: Any, monkeypatch: Any
) -> None:
    conv = _chat(alice_api, "first").json()["conversation_id"]
    _delete_while_answering(monkeypatch, conv, stream=True)
    r = _chat(alice_api, "second", conversation_id=conv, stream=True)
    text = b"".join(r.streaming_content).decode()
    last = text.strip().split("\n\n")[-1]
    assert last.startswith("event: error") and "conversation_deleted" in last


def test_deleting_with_the_broker_down_still_removes_the_transcript(
    alice: Any, alice_api: Any, monkeypatch: Any
) -> None:
    conv = _chat(alice_api, "Forget this").json()["conversation_id"]
    key = transcript_key(alice.pk, conv)
    transcripts.transcript_write(Conversation.objects.get(pk=conv[5:]))
    assert b"Forget this" in storage.read_bytes(key)

    def broker_down(*args: Any, **kwargs: Any) -> None:
        raise KombuOperationalError("broker down")

    for task in (tasks.delete_transcript, tasks.write_transcript):
        monkeypatch.setattr(task, "delay", broker_down)
    assert alice_api.delete(f"/v1/chat/conversations/{conv}").status_code == 204
    with pytest.raises(storage.ObjectNotFound):
        storage.read_bytes(key)
    # A chat with the broker down is answered too (the transcript waits).
    assert _chat(alice_api, "still here?").status_code == 200


def test_a_stale_transcript_write_is_never_marked_current(
    alice: Any, alice_api: Any, monkeypatch: Any
) -> None:
    conv_id = _chat(alice_api, "one").json()["conversation_id"]
    conv = Conversation.objects.get(pk=conv_id[5:])
    stale = transcripts.transcript_bytes(conv)  # a slow writer read 2 messages
    _chat(alice_api, "two", conversation_id=conv_id)
    conv.refresh_from_db()
    transcripts.transcript_write(conv)  # a fast one wrote 4
    monkeypatch.setattr(transcripts, "transcript_bytes", lambda c: stale)
    transcripts.transcript_write(conv)  # ...and the slow one's put lands last
    monkeypatch.undo()
    link = alice_api.get(f"/v1/chat/conversations/{conv_id}/transcript").json()
    with urllib.request.urlopen(link["download_url"], timeout=10) as resp:
        lines = resp.read().decode().splitlines()
    assert link["messages"] == len(lines) - 1 == 4


def test_sending_again_after_a_failure_keeps_the_roles_alternating(
    alice_api: Any, with_llm: Any
) -> None:
    with_llm.script(Behaviour(status=400), then=Behaviour(reply="Hi!"))
    r = _chat(alice_api, "Are you there?")
    assert r.status_code == 502
    conv = r.json()["details"]["conversation_id"]
    assert _chat(alice_api, "Are you there?", conversation_id=conv).status_code == 200
    assert _chat(alice_api, "Good.", conversation_id=conv).status_code == 200
    sent = with_llm.requests[-1].json["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[1]["content"] == "Are you there?"  # once, not twice


def test_a_reply_that_used_a_now_sensitive_memory_is_not_sent_again(
    alice: Any, alice_api: Any, with_llm: Any
) -> None:
    grant(alice, "sensitive_memory")
    item = memory_for(alice, "My bank PIN is 4321")
    with_llm.script(Behaviour(reply="Your PIN is 4321."), then=Behaviour(reply="ok"))
    conv = _chat(alice_api, "What is my PIN?").json()["conversation_id"]
    alice_api.patch(
        f"/v1/memory/{item.public_id}", {"metadata": {"sensitive": True}}, format="json"
    )
    _chat(alice_api, "thanks", conversation_id=conv)
    sent = json.dumps(with_llm.requests[-1].json)
    assert "4321" not in sent and WITHHELD_REPLY in sent


def test_memories_sent_to_a_model_that_fails_are_audited(
    alice: Any, alice_api: Any, with_llm: Any
) -> None:
    item = memory_for(alice, "My sister Anna's birthday is on March 3rd")
    with_llm.script(then=Behaviour(status=500))
    assert _chat(alice_api, "When is Anna's birthday?").status_code == 502
    assert "March 3rd" in json.dumps(with_llm.requests[0].json)
    read = AuditEvent.objects.get(user_id=alice.pk, action="memory.read")
    assert read.target_id == item.public_id and read.details["ref"].startswith("msg_")


def test_deleting_a_conversation_withdraws_what_it_proposed(
    alice: Any, alice_api: Any
) -> None:
    body = _chat(alice_api, "I love hiking").json()
    proposals_create(
        ctx=ctx_for(alice),
        user=alice,
        facts=["Alice loves hiking"],
        origin=body["message"]["id"],
    )
    kept = proposals_create(
        ctx=ctx_for(alice), user=alice, facts=["Alice reads"], origin="msg_other"
    )
    alice_api.delete(f"/v1/chat/conversations/{body['conversation_id']}")
    assert list(MemoryProposal.objects.all()) == kept


def test_a_conversation_deleted_while_the_context_is_assembled_is_409(
    alice_api: Any, monkeypatch: Any
) -> None:
    from chat import services

    conv = _chat(alice_api, "first").json()["conversation_id"]
    real = services.assemble

    def assemble(**kwargs: Any) -> Any:
        Conversation.objects.filter(pk=conv[5:]).delete()  # another tab
        return real(**kwargs)

    monkeypatch.setattr(services, "assemble", assemble)
    r = _chat(alice_api, "second", conversation_id=conv)
    assert (r.status_code, r.json()["error"]) == (409, "conversation_deleted")


def test_the_history_sent_never_opens_with_a_reply(
    alice_api: Any, with_llm: Any
) -> None:
    # u1 a1 | u2 (fails) | u3 a3 | u4 a4 | u5: the last six stored messages are
    # a1 u2 u3 a3 u4 a4, a window that opens with a reply.
    with_llm.script(Behaviour(reply="a1"), Behaviour(status=400), then=Behaviour())
    conv = _chat(alice_api, "u1").json()["conversation_id"]
    assert _chat(alice_api, "u2", conversation_id=conv).status_code == 502
    for text in ("u3", "u4", "u5"):
        assert _chat(alice_api, text, conversation_id=conv).status_code == 200
    roles = [m["role"] for m in with_llm.requests[-1].json["messages"]]
    assert roles[:2] == ["system", "user"]
    assert all(a != b for a, b in itertools.pairwise(roles[1:]))


def test_a_reply_that_used_a_since_edited_memory_is_not_sent_again(
    alice: Any, alice_api: Any, with_llm: Any
) -> None:
    item = memory_for(alice, "My locker code is 7788")
    with_llm.script(Behaviour(reply="Your locker code is 7788."), then=Behaviour())
    conv = _chat(alice_api, "What is my locker code?").json()["conversation_id"]
    alice_api.patch(
        f"/v1/memory/{item.public_id}",
        {"content": "Locker code removed"},
        format="json",
    )
    _chat(alice_api, "thanks", conversation_id=conv)
    assert "7788" not in json.dumps(with_llm.requests[-1].json)
