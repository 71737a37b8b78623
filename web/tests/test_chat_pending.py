"""Replies answered in the background and polled for (streaming off): the real
thread, its limits, the poll's answers in every state, and erasure."""

from __future__ import annotations

import re
import time

import pytest
from django.core.cache import cache
from django.db import DatabaseError, connection

from chat import pending
from chat.models import Conversation, Message
from kimberly import rls
from privacy.erasure import redis_keys
from privacy.erasure.redis_keys import Subject
from tests.standins.openai_server import Behaviour
from web.tests.conftest import HX, text_of

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _own_slots(monkeypatch):
    monkeypatch.setattr(pending, "_slots", None)


def _poll_url(sent) -> str:
    found = re.search(r'hx-get="(/chat/pending/[^"]+)"', text_of(sent))
    assert found, text_of(sent)
    return found.group(1).replace("&amp;", "&")


def _send_deferred(client, message="Hello", **extra):
    """Send with the background work kept for later: ([work], response)."""
    later: list = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pending, "run_in_background", later.append)
        sent = client.post("/chat/send", {"message": message, **extra}, **HX)
    assert sent.status_code == 200, text_of(sent)
    return sent, later


def _other_connections() -> int:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        return int(cur.fetchone()[0])


def _wait_for_replies(user, n: int) -> None:
    """Until the background threads stored `n` replies (at most 30 s)."""
    for _ in range(300):
        if Message.objects.filter(user=user, role="assistant").count() >= n:
            return
        time.sleep(0.1)
    pytest.fail(f"{n} replies did not come")


def test_the_real_thread_answers_as_the_user_and_closes_its_connection(
    alice, alice_web
):
    sent = alice_web.post("/chat/send", {"message": "Hello there"}, **HX)
    assert sent.status_code == 200
    _wait_for_replies(alice, 1)
    time.sleep(0.2)  # the thread closes its connection after storing the reply
    r = alice_web.get(_poll_url(sent), **HX)
    assert r.status_code == 200 and 'class="turn turn-reply"' in text_of(r)
    assert Message.objects.filter(user=alice, role="assistant").count() == 1
    assert _other_connections() == 0


def test_while_the_model_answers_no_connection_is_held(alice, alice_web, with_llm):
    with_llm.script(Behaviour(delay=1.5), then=Behaviour(delay=1.5))
    for n in range(2):
        alice_web.post("/chat/send", {"message": f"hello {n}"}, **HX)
    held = _other_connections()  # both threads wait on the model (1.5 s each)
    _wait_for_replies(alice, 2)
    assert held == 0, f"replies in the works hold {held} connections"


def test_past_its_slots_a_process_refuses_more_and_stores_nothing(
    alice, alice_web, settings
):
    settings.WEB_CHAT_REPLY_THREADS = 1
    _send_deferred(alice_web, "one")
    later: list = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pending, "run_in_background", later.append)
        r = alice_web.post("/chat/send", {"message": "two"}, **HX)
    assert r.status_code == 503 and r["Retry-After"] == "5"
    assert 'data-error-code="chat_busy"' in text_of(r)
    assert list(
        Message.objects.filter(user=alice).values_list("content", flat=True)
    ) == ["one"]


def test_a_poll_racing_the_stored_reply_never_answers_404(
    alice, alice_web, monkeypatch
):
    sent, later = _send_deferred(alice_web)
    real = pending.reply_state

    def state_then_the_thread_finishes(**kw):
        found = real(**kw)  # still answering
        later[0]()  # the thread stores the reply now
        return found

    monkeypatch.setattr(pending, "reply_state", state_then_the_thread_finishes)
    r = alice_web.get(_poll_url(sent), **HX)
    assert r.status_code == 200 and 'class="turn turn-reply"' in text_of(r)


def test_past_the_deadline_a_lost_state_says_no_reply_came(alice, alice_web):
    sent, _later = _send_deferred(alice_web)
    cache.delete_pattern("kb:chat:pending:*")  # type: ignore[attr-defined]
    assert alice_web.get(_poll_url(sent), **HX).status_code == 404
    past = re.sub(r"until=\d+", "until=1", _poll_url(sent))
    r = alice_web.get(past, **HX)
    assert r.status_code == 200 and 'data-error-code="runner_timeout"' in text_of(r)


def test_a_crashed_reply_is_said_at_once(alice, alice_web, monkeypatch):
    sent, later = _send_deferred(alice_web)

    def broken(**kw):
        raise DatabaseError("connection lost")

    monkeypatch.setattr(pending, "chat_finish", broken)
    later[0]()
    r = alice_web.get(_poll_url(sent), **HX)
    assert r.status_code == 200 and 'data-error-code="internal_error"' in text_of(r)
    assert "connection lost" not in text_of(r)


def test_no_pending_state_comes_back_after_erasure(alice, alice_web):
    _sent, later = _send_deferred(alice_web)
    subject = Subject(user_id=alice.pk)
    assert redis_keys.probe_pending_replies(subject) == 1
    with rls.maintenance("test: the account's rows go"):
        Conversation.objects.filter(user_id=alice.pk).delete()
    assert redis_keys.erase_pending_replies(subject) == 1
    later[0]()  # the reply fails (conversation_deleted): no state is written back
    assert redis_keys.probe_pending_replies(subject) == 0


def test_two_messages_waiting_have_their_own_elements(alice, alice_web):
    first, _ = _send_deferred(alice_web, "one")
    conversation = Conversation.objects.get(user=alice)
    second, _ = _send_deferred(alice_web, "two", conversation_id=conversation.public_id)
    ids = re.findall(r'<li id="(pending-[^"]+)"', text_of(first) + text_of(second))
    assert len(ids) == 2 and len(set(ids)) == 2


def test_bob_learns_nothing_of_alices_pending_reply(alice, alice_web, bob_web):
    sent, _ = _send_deferred(alice_web)
    url = _poll_url(sent)
    assert alice_web.get(url, **HX).status_code == 204
    assert bob_web.get(url, **HX).status_code == 404
