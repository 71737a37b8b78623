"""POST /v1/chat and conversations, against the real stores and a stand-in model server."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client import REGISTRY

from audit.models import AuditEvent
from chat.models import Conversation, Message
from kimberly import rls
from memory.constants import Tier
from memory.models import MemoryItem
from memory.quotas import quota_set
from memory.tests.factories import ctx_for, memory_for
from tests.standins.openai_server import Behaviour

pytestmark = pytest.mark.django_db(transaction=True)

ANNA = "My sister Anna's birthday is on March 3rd"


def _chat(client: Any, message: str, **extra: Any) -> Any:
    return client.post("/v1/chat", {"message": message, **extra}, format="json")


def _counter(result: str) -> float:
    value = REGISTRY.get_sample_value(
        "kimberly_chat_requests_total", {"result": result}
    )
    return value or 0.0


def test_offline_chat_answers_from_memory_and_names_its_sources(
    alice: Any, alice_api: Any
) -> None:
    item = memory_for(alice, ANNA)
    before = _counter("ok")
    r = _chat(alice_api, "When is Anna's birthday?")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["usage"]["runner"] == "offline"
    assert "no language model is configured" in body["message"]["content"].lower()
    assert ANNA in body["message"]["content"]
    assert [c["memory_id"] for c in body["context"]] == [item.public_id]
    assert body["context"][0]["why"]
    assert body["conversation_id"].startswith("conv_")
    assert _counter("ok") == before + 1

    used = alice_api.get(f"/v1/chat/messages/{body['message']['id']}/context").json()
    assert used["conversation_id"] == body["conversation_id"]
    assert [(c["memory_id"], c["status"], c["edited"]) for c in used["context"]] == [
        (item.public_id, "active", False)
    ]
    read = AuditEvent.objects.get(user_id=alice.pk, action="memory.read")
    assert (read.target_id, read.details["ref"]) == (
        item.public_id,
        body["message"]["id"],
    )


def test_a_conversation_keeps_its_turns_and_lists_them(alice_api: Any) -> None:
    first = _chat(alice_api, "Hello Kimberly").json()
    conv = first["conversation_id"]
    second = _chat(alice_api, "Do you remember me?", conversation_id=conv)
    assert second.json()["conversation_id"] == conv
    listed = alice_api.get("/v1/chat/conversations").json()
    assert [(c["id"], c["message_count"], c["title"]) for c in listed["items"]] == [
        (conv, 4, "Hello Kimberly")
    ]
    detail = alice_api.get(f"/v1/chat/conversations/{conv}").json()
    assert [m["role"] for m in detail["messages"]["items"]] == [
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    assert detail["messages"]["total"] == 4


def test_the_model_gets_the_memories_and_the_turns(
    alice: Any, alice_api: Any, with_llm: Any
) -> None:
    memory_for(alice, ANNA)
    with_llm.script(
        Behaviour(reply="It is on March 3rd."), Behaviour(reply="You're welcome.")
    )
    first = _chat(alice_api, "When is Anna's birthday?").json()
    assert first["message"]["content"] == "It is on March 3rd."
    assert first["usage"] == {
        "prompt_tokens": 42,
        "completion_tokens": first["usage"]["completion_tokens"],
        "model": "standin-model",
        "runner": "openai",
    }
    assert ANNA in json.dumps(with_llm.requests[0].messages)
    _chat(
        alice_api,
        "Thanks, Anna will be happy",
        conversation_id=first["conversation_id"],
    )
    sent = [m["content"] for m in with_llm.requests[1].messages]
    assert "When is Anna's birthday?" in sent and "It is on March 3rd." in sent


def test_sensitive_memories_never_go_to_the_model(
    alice: Any, alice_api: Any, with_llm: Any
) -> None:
    memory_for(alice, "My bank PIN is 4321", metadata={"sensitive": True})
    memory_for(alice, "My bank is the Cooperative Bank")
    body = _chat(alice_api, "What is my bank PIN?").json()
    prompt = json.dumps(with_llm.requests[0].json)
    assert "4321" not in prompt and "Cooperative Bank" in prompt
    assert "4321" not in json.dumps(body)


def test_bob_never_sees_alices_memories_or_conversations(
    alice: Any, alice_api: Any, bob_api: Any, with_llm: Any
) -> None:
    memory_for(alice, ANNA)
    mine = _chat(alice_api, "Anna birthday").json()
    theirs = _chat(bob_api, "When is Anna's birthday?").json()
    assert theirs["context"] == []
    assert "March" not in json.dumps(with_llm.requests[-1].json)
    conv, msg = mine["conversation_id"], mine["message"]["id"]
    assert bob_api.get(f"/v1/chat/conversations/{conv}").status_code == 404
    assert bob_api.get(f"/v1/chat/conversations/{conv}/transcript").status_code == 404
    assert bob_api.delete(f"/v1/chat/conversations/{conv}").status_code == 404
    assert bob_api.get(f"/v1/chat/messages/{msg}/context").status_code == 404
    assert _chat(bob_api, "hi", conversation_id=conv).status_code == 404
    assert bob_api.get("/v1/chat/conversations").json()["total"] == 1
    assert Conversation.objects.get(pk=conv[5:]).message_count == 2


def test_a_failing_runner_is_502_and_keeps_the_users_message(
    alice_api: Any, with_llm: Any
) -> None:
    with_llm.script(then=Behaviour(status=500))
    r = _chat(alice_api, "Are you there?")
    assert (r.status_code, r.json()["error"]) == (502, "model_runner_error")
    details = r.json()["details"]
    conv = alice_api.get(f"/v1/chat/conversations/{details['conversation_id']}").json()
    assert [(m["id"], m["role"], m["content"]) for m in conv["messages"]["items"]] == [
        (details["message_id"], "user", "Are you there?")
    ]


def test_a_runner_past_its_timeout_is_504_not_a_hang(
    alice_api: Any, with_llm: Any, settings: Any
) -> None:
    settings.LLM_TIMEOUT_SECONDS = 0.5
    with_llm.script(then=Behaviour(delay=5))
    r = _chat(alice_api, "Slow day?")
    assert (r.status_code, r.json()["error"]) == (504, "model_runner_timeout")
    assert Message.objects.filter(role="user", content="Slow day?").exists()
    assert not Message.objects.filter(role="assistant").exists()


def _events(response: Any) -> list[tuple[str, Any]]:
    text = b"".join(response.streaming_content).decode()
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_streaming_sends_deltas_then_the_whole_reply(
    alice: Any, alice_api: Any, with_llm: Any
) -> None:
    item = memory_for(alice, ANNA)
    with_llm.script(Behaviour(reply="Anna's birthday is March 3rd."))
    r = _chat(alice_api, "Anna's birthday?", stream=True)
    assert r.status_code == 200
    assert r["Content-Type"].startswith("text/event-stream")
    # The server reads the stream after the request's scope has ended.
    with rls.no_scope():
        events = _events(r)
    kinds = [e for e, _ in events]
    assert kinds[-1] == "done" and set(kinds[:-1]) == {"delta"} and len(kinds) > 2
    text = "".join(d["content"] for e, d in events if e == "delta")
    done = events[-1][1]
    assert text == done["message"]["content"] == "Anna's birthday is March 3rd."
    assert [c["memory_id"] for c in done["context"]] == [item.public_id]
    assert Message.objects.get(role="assistant").content == text


def test_a_stream_that_fails_ends_with_an_error_event(
    alice_api: Any, with_llm: Any
) -> None:
    with_llm.script(then=Behaviour(status=503))
    events = _events(_chat(alice_api, "hello?", stream=True))
    assert events[-1][0] == "error"
    assert events[-1][1]["error"] == "model_runner_error"
    assert Message.objects.filter(role="user", content="hello?").exists()


def test_save_to_memory_keeps_the_message_in_short_term_memory(
    alice: Any, alice_api: Any
) -> None:
    r = _chat(alice_api, "I parked on level 3", save_to_memory=True)
    assert r.status_code == 200
    item = MemoryItem.objects.get(user=alice)
    assert (item.tier, item.source, item.content) == (
        "short-term",
        "chat",
        "I parked on level 3",
    )
    # The message it saved is not its own context.
    assert r.json()["context"] == []


def test_save_to_memory_over_quota_is_429_and_stores_nothing(
    alice: Any, alice_api: Any
) -> None:
    quota_set(ctx=ctx_for(alice), user_id=alice.pk, tier=Tier.SHORT_TERM, limit_bytes=5)
    r = _chat(alice_api, "I parked on level 3", save_to_memory=True)
    assert (r.status_code, r.json()["error"]) == (429, "quota_exceeded")
    assert not Conversation.objects.exists() and not Message.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"message": ""},
        {"message": "   "},
        {"message": 5},
        {"message": "x" * 8001},
        {"message": "hi", "stream": "yes"},
        {"message": "hi", "save_to_memory": 1},
        {"message": "hi", "extra": True},
    ],
)
def test_bad_input_is_400_and_changes_nothing(alice_api: Any, body: Any) -> None:
    r = alice_api.post("/v1/chat", body, format="json")
    assert r.status_code == 400, r.content
    assert not Conversation.objects.exists()


def test_an_unknown_conversation_is_404(alice_api: Any) -> None:
    for cid in ("conv_nope", "conv_00000000-0000-0000-0000-000000000000", "x"):
        assert _chat(alice_api, "hi", conversation_id=cid).status_code == 404
    assert not Message.objects.exists()


def test_a_replys_context_shows_what_became_of_each_memory(
    alice: Any, alice_api: Any
) -> None:
    edited = memory_for(alice, "Anna likes tulips")
    archived = memory_for(alice, "Anna lives in Leeds")
    deleted = memory_for(alice, "Anna has a dog named Rex")
    body = _chat(alice_api, "Tell me about Anna").json()
    assert len(body["context"]) == 3
    alice_api.patch(
        f"/v1/memory/{edited.public_id}", {"content": "Anna likes roses"}, format="json"
    )
    alice_api.post(f"/v1/memory/{archived.public_id}/archive")
    alice_api.delete(f"/v1/memory/{deleted.public_id}")
    used = alice_api.get(f"/v1/chat/messages/{body['message']['id']}/context").json()
    states = {c["memory_id"]: (c["status"], c["edited"]) for c in used["context"]}
    assert states == {
        edited.public_id: ("active", True),
        archived.public_id: ("archived", False),
        deleted.public_id: ("deleted", False),
    }


def test_deleting_a_conversation_deletes_its_messages(alice_api: Any) -> None:
    conv = _chat(alice_api, "Forget this").json()["conversation_id"]
    assert alice_api.delete(f"/v1/chat/conversations/{conv}").status_code == 204
    assert alice_api.get(f"/v1/chat/conversations/{conv}").status_code == 404
    assert not Message.objects.exists()
    assert AuditEvent.objects.filter(action="chat.delete", target_id=conv).exists()


def test_chat_is_rate_limited_per_user(
    alice_api: Any, bob_api: Any, settings: Any
) -> None:
    settings.CHAT_RATE_PER_USER = 2
    assert _chat(alice_api, "one").status_code == 200
    assert _chat(alice_api, "two").status_code == 200
    r = _chat(alice_api, "three")
    assert (r.status_code, r.json()["error"]) == (429, "rate_limited")
    assert "Retry-After" in r
    assert _chat(bob_api, "one").status_code == 200
    assert not Message.objects.filter(content="three").exists()


def test_a_follow_up_finds_memories_through_the_previous_turn(
    alice: Any, alice_api: Any
) -> None:
    husband = memory_for(alice, "Anna's husband Tom is a carpenter in Leeds")
    first = _chat(alice_api, "Tell me about Anna's husband Tom").json()
    follow = _chat(
        alice_api, "Where does he work?", conversation_id=first["conversation_id"]
    ).json()
    assert husband.public_id in [c["memory_id"] for c in follow["context"]]
    # Without the previous turn nothing matches (no vectors here: a test worker
    # does not embed, so retrieval is lexical).
    alone = _chat(alice_api, "Where does he work?").json()
    assert husband.public_id not in [c["memory_id"] for c in alone["context"]]
