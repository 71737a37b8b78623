"""The chat screen through Django's test client: the offline state said
honestly, replies polled for and streamed with their context rail, protect and
archive from the rail, proposals accepted and rejected (and polled for), and
bob getting 404 on every fragment of alice's."""

from __future__ import annotations

import json
import re
import time

import pytest

from chat import pending
from chat.models import Conversation, Message
from memory import gateway
from memory.models import MemoryItem, MemoryProposal
from memory.tests.factories import ctx_for, memory_for
from tests.standins.openai_server import Behaviour
from web.tests.conftest import HX, said, text_of

pytestmark = pytest.mark.django_db(transaction=True)

ANNA = "Anna, my sister, has her birthday on March 3rd"


@pytest.fixture(autouse=True)
def _replies_inline(monkeypatch):
    """The background reply runs inline, before the composer's response returns
    (the browser tests and tests of chat/pending.py run the real thread), with
    this test's own reply slots."""
    monkeypatch.setattr(pending, "run_in_background", lambda work: work())
    monkeypatch.setattr(pending, "_slots", None)


def _send(client, message, **extra):
    return client.post("/chat/send", {"message": message, **extra}, **HX)


def _poll_url(sent) -> str:
    found = re.search(r'hx-get="(/chat/pending/[^"]+)"', text_of(sent))
    assert found, text_of(sent)
    return found.group(1).replace("&amp;", "&")


def _exchange(client, message, **extra):
    """Send, then ask once for the reply (answered inline, so it is there)."""
    sent = _send(client, message, **extra)
    assert sent.status_code == 200, text_of(sent)
    return client.get(_poll_url(sent), **HX)


def _events(response) -> list[tuple[str, dict]]:
    body = b"".join(response.streaming_content).decode()
    out = []
    for block in body.split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def _reply(alice) -> Message:
    return Message.objects.get(user=alice, role="assistant")


def _propose(alice, fact: str = "Alice loves hiking in the Alps") -> MemoryProposal:
    (proposal,) = gateway.propose(
        ctx=ctx_for(alice), user=alice, facts=[fact], origin="msg_x"
    )
    return proposal


def test_the_offline_runner_is_said_plainly(alice_web):
    page = text_of(alice_web.get("/chat"))
    assert "No language model configured." in page
    assert 'id="composer-message"' in page and "Save to memory" in page
    assert "New conversation" in page


def test_a_configured_model_shows_no_offline_notice(alice_web, with_llm):
    assert "No language model configured." not in text_of(alice_web.get("/chat"))


def test_the_message_shows_at_once_and_the_reply_is_polled_for(alice, alice_web):
    item = memory_for(alice, ANNA)
    sent = _send(alice_web, "When is Anna's birthday?")
    assert sent.status_code == 200, text_of(sent)
    conversation = Conversation.objects.get(user=alice)
    reply = _reply(alice)
    asked = text_of(sent)
    assert "When is Anna&#x27;s birthday?" in asked
    assert f'hx-get="/chat/pending/{reply.public_id}?until=' in asked
    assert 'hx-trigger="every 1s"' in asked and 'aria-busy="true"' in asked
    assert f'value="{conversation.public_id}" hx-swap-oob="true"' in asked
    assert sent["HX-Push-Url"] == f"/chat/{conversation.public_id}"
    assert said(sent)["message"] == "Message sent; Kimberly is answering."

    r = alice_web.get(_poll_url(sent), **HX)
    assert r.status_code == 200, text_of(r)
    body = text_of(r)
    assert f'id="turn-{reply.public_id}"' in body
    assert 'hx-trigger="every 1s"' not in body  # the polling element is replaced
    assert "Answered from memory alone: no language model configured." in body
    # The rail: the memory, why it was used, its score, and the actions.
    assert f"/chat/replies/{reply.public_id}/{item.public_id}/protect" in body
    assert "<dt>Why</dt>" in body and "<dt>Score</dt>" in body
    assert ANNA in body
    assert "Remove (archive)" in body
    # The list, the composer's conversation and the title follow out of band.
    assert f'value="{conversation.public_id}" hx-swap-oob="true"' in body
    assert f'href="/chat/{conversation.public_id}" aria-current="page"' in body
    assert said(r)["message"] == "Kimberly replied, using 1 memory."


def test_the_conversation_page_shows_the_transcript_and_rail(alice, alice_web):
    memory_for(alice, ANNA)
    _send(alice_web, "When is Anna's birthday?")
    conversation = Conversation.objects.get(user=alice)
    page = text_of(alice_web.get(f"/chat/{conversation.public_id}"))
    assert "When is Anna&#x27;s birthday?" in page
    assert ANNA in page and "Memories used" in page
    assert "Remove (archive)" in page


def test_a_plain_form_post_goes_back_to_the_conversation(alice, alice_web):
    r = alice_web.post("/chat/send", {"message": "Hello"})
    conversation = Conversation.objects.get(user=alice)
    assert r.status_code == 302
    assert r["Location"] == f"/chat/{conversation.public_id}"


def test_save_to_memory_keeps_the_message_and_says_so(alice, alice_web):
    r = _send(alice_web, "I park on level 3 today", save_to_memory="on")
    assert r.status_code == 200
    item = MemoryItem.objects.get(user=alice)
    assert (item.content, item.tier) == ("I park on level 3 today", "short-term")
    assert "Saved to memory" in text_of(r)
    assert "Your message was saved to memory." in said(r)["message"]


def test_an_empty_message_is_refused_beside_the_composer(alice, alice_web):
    r = _send(alice_web, "")
    assert r.status_code == 400
    assert 'data-error-code="validation_error"' in text_of(r)
    assert not Conversation.objects.filter(user=alice).exists()


def test_the_reply_streams_then_comes_with_its_rail(alice, alice_web):
    item = memory_for(alice, ANNA)
    r = alice_web.post("/chat/stream", {"message": "When is Anna's birthday?"}, **HX)
    assert r["Content-Type"].startswith("text/event-stream")
    events = _events(r)
    names = [name for name, _ in events]
    assert names[0] == "turn" and names[-1] == "done"
    assert names.count("delta") >= 2  # the offline runner streams line by line
    conversation = Conversation.objects.get(user=alice)
    turn = events[0][1]
    assert turn["conversation_id"] == conversation.public_id
    assert 'id="pending-reply"' in turn["html"]
    text = "".join(d["content"] for name, d in events if name == "delta")
    assert text == _reply(alice).content
    done = events[-1][1]
    assert (
        f"/chat/replies/{_reply(alice).public_id}/{item.public_id}/protect"
        in (done["html"])
    )
    assert done["said"] == "Kimberly replied, using 1 memory."


def test_a_failing_model_is_an_error_event_and_the_message_stays(
    alice, alice_web, with_llm
):
    with_llm.script(Behaviour(status=500), then=Behaviour(status=500))
    r = alice_web.post("/chat/stream", {"message": "Hello"}, **HX)
    events = _events(r)
    assert [n for n, _ in events] == ["turn", "error"]
    assert 'data-error-code="model_runner_error"' in events[1][1]["html"]
    assert Message.objects.filter(user=alice, role="user").count() == 1


def test_a_failing_model_is_said_in_place_of_the_reply_and_the_message_stays(
    alice, alice_web, with_llm
):
    with_llm.script(Behaviour(status=500), then=Behaviour(status=500))
    r = _exchange(alice_web, "Hello")
    assert r.status_code == 200
    assert 'data-error-code="model_runner_error"' in text_of(r)
    assert "hx-get" not in text_of(r)  # no more polling
    assert said(r)["message"].startswith("Error: No reply:")
    assert Message.objects.filter(user=alice, role="user").count() == 1
    assert not Message.objects.filter(user=alice, role="assistant").exists()


def test_while_the_model_answers_the_poll_waits_then_gives_up(alice, alice_web):
    later: list = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pending, "run_in_background", later.append)
        sent = _send(alice_web, "Hello")
    url = _poll_url(sent)
    assert alice_web.get(url, **HX).status_code == 204  # still answering
    past = re.sub(r"until=\d+", "until=1", url)
    r = alice_web.get(past, **HX)
    assert r.status_code == 200 and 'data-error-code="runner_timeout"' in text_of(r)
    assert "Your message is kept" in text_of(r)
    later[0]()  # the answer arrives after all: the next poll shows it
    assert 'class="turn turn-reply"' in text_of(alice_web.get(url, **HX))


def test_a_refused_stream_is_an_ordinary_error_response(alice_web):
    r = alice_web.post(
        "/chat/stream", {"message": "Hi", "conversation_id": "conv_nope"}, **HX
    )
    assert r.status_code == 404
    assert 'data-error-code="not_found"' in text_of(r)


def test_protect_and_archive_from_the_rail(alice, alice_web):
    item = memory_for(alice, ANNA)
    _send(alice_web, "When is Anna's birthday?")
    base = f"/chat/replies/{_reply(alice).public_id}/{item.public_id}"
    r = alice_web.post(f"{base}/protect", **HX)
    assert r.status_code == 200
    assert MemoryItem.objects.get(pk=item.pk).protected
    assert ">Protected<" in text_of(r) and "Unprotect" in text_of(r)
    assert said(r)["message"] == "Memory protected."
    r = alice_web.post(f"{base}/archive", **HX)
    assert MemoryItem.objects.get(pk=item.pk).status == "archived"
    assert ">Archived<" in text_of(r) and ">Restore<" in text_of(r)
    assert said(r)["message"] == "Memory archived."


def test_the_rail_acts_only_on_memories_the_reply_used(alice, alice_web):
    memory_for(alice, ANNA)
    other = memory_for(alice, "The car needs new winter tyres", archived=True)
    _send(alice_web, "When is Anna's birthday?")
    r = alice_web.post(
        f"/chat/replies/{_reply(alice).public_id}/{other.public_id}/restore", **HX
    )
    assert r.status_code == 404
    assert MemoryItem.objects.get(pk=other.pk).status == "archived"


def test_a_deleted_memory_shows_in_the_rail_without_itstext_of(alice, alice_web):
    item = memory_for(alice, ANNA)
    _send(alice_web, "When is Anna's birthday?")
    MemoryItem.objects.filter(pk=item.pk).delete()
    conversation = Conversation.objects.get(user=alice)
    page = text_of(alice_web.get(f"/chat/{conversation.public_id}"))
    rail = page[page.index("Memories used") :]
    assert "<em>Deleted</em>" in rail
    assert "Remove (archive)" not in rail


def test_proposals_are_listed_and_accepted_or_rejected(alice, alice_web):
    keep, drop = _propose(alice), _propose(alice, "Alice dislikes olives")
    page = text_of(alice_web.get("/chat"))
    assert "Alice loves hiking in the Alps" in page and "Alice dislikes olives" in page
    r = alice_web.post(f"/chat/proposals/{keep.public_id}/accept", **HX)
    assert r.status_code == 200 and "Accepted" in text_of(r)
    assert said(r)["message"] == "Saved to memory."
    assert MemoryItem.objects.get(user=alice).content == keep.content
    r = alice_web.post(f"/chat/proposals/{drop.public_id}/reject", **HX)
    assert "Rejected" in text_of(r)
    assert MemoryProposal.objects.get(pk=drop.pk).status == "rejected"
    again = alice_web.post(f"/chat/proposals/{keep.public_id}/accept", **HX)
    assert again.status_code == 409
    assert 'data-error-code="proposal_decided"' in text_of(again)


def test_the_proposals_panel_is_polled_after_a_configured_reply(
    alice, alice_web, with_llm
):
    r = _exchange(alice_web, "I love hiking")
    assert 'hx-get="/chat/proposals?seen=0&amp;until=' in text_of(r)
    until = int(time.time()) + 60
    assert (
        alice_web.get(f"/chat/proposals?seen=0&until={until}", **HX).status_code == 204
    )
    _propose(alice)
    r = alice_web.get(f"/chat/proposals?seen=0&until={until}", **HX)
    assert r.status_code == 200 and "Alice loves hiking in the Alps" in text_of(r)
    assert "seen=1" in text_of(r)
    done = alice_web.get("/chat/proposals?seen=1&until=1", **HX)
    assert done.status_code == 286 and "hx-trigger" not in text_of(done)


def test_an_offline_reply_does_not_poll_for_proposals(alice_web):
    assert "/chat/proposals?seen" not in text_of(_exchange(alice_web, "Hello"))


def test_bob_gets_404_on_alices_conversation_rail_and_proposals(
    alice, alice_web, bob_web
):
    item = memory_for(alice, ANNA)
    _send(alice_web, "When is Anna's birthday?")
    proposal = _propose(alice, "Alice's secret recipe")
    conversation = Conversation.objects.get(user=alice)
    reply = _reply(alice)
    assert bob_web.get(f"/chat/{conversation.public_id}").status_code == 404
    for action in ("protect", "archive"):
        url = f"/chat/replies/{reply.public_id}/{item.public_id}/{action}"
        assert bob_web.post(url, **HX).status_code == 404
    for decision in ("accept", "reject"):
        url = f"/chat/proposals/{proposal.public_id}/{decision}"
        assert bob_web.post(url, **HX).status_code == 404
    r = bob_web.post(
        "/chat/send", {"message": "hi", "conversation_id": conversation.public_id}, **HX
    )
    assert r.status_code == 404
    # alice's reply, stored or still being answered, is no poll of bob's
    waiting = f"/chat/pending/{reply.public_id}?until={int(time.time()) + 60}"
    assert bob_web.get(waiting, **HX).status_code == 404
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pending, "run_in_background", lambda work: None)
        sent = _send(alice_web, "still thinking?")
    assert alice_web.get(_poll_url(sent), **HX).status_code == 204
    assert bob_web.get(_poll_url(sent), **HX).status_code == 404
    page = text_of(bob_web.get("/chat"))
    assert ANNA not in page and "secret recipe" not in page
    assert conversation.title not in page
    assert not MemoryItem.objects.get(pk=item.pk).protected
    assert MemoryProposal.objects.get(pk=proposal.pk).status == "pending"
