"""The memory gateway (what chat and agents see), proposals and accesses."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction

from audit.models import AuditEvent
from kimberly.context import Actor, Context
from memory import gateway
from memory.constants import Tier
from memory.models import MemoryItem, MemoryProposal
from memory.quotas import quota_set
from memory.retrieval import flush_retrieval_log
from memory.services.proposals import proposals_create
from memory.tests.factories import ctx_for, memory_for

pytestmark = pytest.mark.django_db(transaction=True)


def _recall(user: Any, text: str) -> list[str]:
    return [r.content for r in gateway.recall(user=user, query=text, limit=5)]


def test_recall_never_returns_sensitive_archived_or_another_users_memories(
    alice: Any, bob: Any
) -> None:
    memory_for(alice, "Alice's tea is green tea with lemon")
    memory_for(
        alice, "Alice's tea secret: the pharmacy number", metadata={"sensitive": True}
    )
    memory_for(alice, "Alice's old tea was black tea", archived=True)
    memory_for(bob, "Bob's tea is builder's tea")
    got = _recall(alice, "what tea does she like")
    assert got == ["Alice's tea is green tea with lemon"]
    assert "Bob's tea is builder's tea" not in _recall(alice, "builder's tea Bob")


def test_recall_adds_the_latest_session_entries_even_when_they_do_not_match(
    alice: Any,
) -> None:
    memory_for(alice, "We were planning the garden party", tier=Tier.SHORT_TERM)
    memory_for(alice, "Alice likes marmalade", tier=Tier.LONG_TERM)
    got = gateway.recall(user=alice, query="marmalade", limit=5)
    assert [r.content for r in got] == [
        "Alice likes marmalade",
        "We were planning the garden party",
    ]
    assert got[1].why == "in your current session"


def test_sensitive_session_entries_never_slip_in(alice: Any) -> None:
    memory_for(
        alice, "my PIN is 1234", tier=Tier.SHORT_TERM, metadata={"sensitive": True}
    )
    assert gateway.recall(user=alice, query="hello", limit=5) == []


def test_record_reads_audits_each_memory_and_feeds_accesses(
    alice: Any, bob: Any, alice_api: Any, bob_api: Any
) -> None:
    item = memory_for(alice, "Alice's sister is Anna")
    used = gateway.recall(user=alice, query="sister Anna", limit=5)
    with transaction.atomic():
        gateway.record_reads(
            ctx=ctx_for(alice),
            user=alice,
            reader=gateway.Reader("chat", "msg_test"),
            used=used,
        )
    event = AuditEvent.objects.get(user_id=alice.pk, action="memory.read")
    assert event.target_id == item.public_id
    assert event.details == {"reader": "chat", "ref": "msg_test", "rank": 1}
    flush_retrieval_log()
    r = alice_api.get(f"/v1/memory/{item.public_id}/accesses")
    assert r.status_code == 200, r.content
    assert [(a["kind"], a["ref"], a["rank"]) for a in r.json()["items"]] == [
        ("chat", "msg_test", 1)
    ]
    assert bob_api.get(f"/v1/memory/{item.public_id}/accesses").status_code == 404


def test_a_query_is_an_access_of_kind_query(alice: Any, alice_api: Any) -> None:
    item = memory_for(alice, "Alice's sister is Anna")
    r = alice_api.post("/v1/memory/query", {"query": "Anna"}, format="json")
    assert r.status_code == 200
    flush_retrieval_log()
    accesses = alice_api.get(f"/v1/memory/{item.public_id}/accesses").json()
    assert [a["kind"] for a in accesses["items"]] == ["query"]
    assert accesses["items"][0]["ref"] == r["X-Request-ID"]


def _propose(user: Any, *facts: str) -> list[MemoryProposal]:
    return proposals_create(
        ctx=Context(Actor.system("test")), user=user, facts=list(facts), origin="msg_x"
    )


def test_proposals_wait_for_the_user_and_accept_stores_a_long_term_memory(
    alice: Any, alice_api: Any
) -> None:
    (p,) = _propose(alice, "Alice is allergic to peanuts")
    assert not MemoryItem.objects.filter(user=alice).exists()
    listed = alice_api.get("/v1/memory/proposals?status=pending").json()
    assert [x["id"] for x in listed["items"]] == [p.public_id]
    r = alice_api.post(f"/v1/memory/proposals/{p.public_id}/accept")
    assert r.status_code == 200, r.content
    item = MemoryItem.objects.get(user=alice)
    assert (item.tier, item.source, item.content) == (
        "long-term",
        "chat",
        "Alice is allergic to peanuts",
    )
    assert r.json()["memory_id"] == item.public_id
    again = alice_api.post(f"/v1/memory/proposals/{p.public_id}/reject")
    assert (again.status_code, again.json()["error"]) == (409, "proposal_decided")


def test_reject_stores_nothing_and_repeats_are_not_proposed_again(
    alice: Any, alice_api: Any
) -> None:
    (p,) = _propose(alice, "Alice likes jazz")
    assert _propose(alice, "alice likes  JAZZ") == []  # already pending
    r = alice_api.post(f"/v1/memory/proposals/{p.public_id}/reject")
    assert r.json()["status"] == "rejected"
    assert not MemoryItem.objects.filter(user=alice).exists()
    memory_for(alice, "Alice plays the cello")
    assert _propose(alice, "Alice plays the cello") == []  # already a memory


def test_accept_over_quota_is_429_and_leaves_the_proposal_pending(
    alice: Any, alice_api: Any
) -> None:
    (p,) = _propose(alice, "Alice's cat is called Miso")
    quota_set(ctx=ctx_for(alice), user_id=alice.pk, tier=Tier.LONG_TERM, limit_bytes=10)
    r = alice_api.post(f"/v1/memory/proposals/{p.public_id}/accept")
    assert (r.status_code, r.json()["error"]) == (429, "quota_exceeded")
    p.refresh_from_db()
    assert p.status == "pending"
    assert not MemoryItem.objects.filter(user=alice).exists()


def test_auto_accept_stores_proposals_at_once(alice: Any) -> None:
    alice.memory_auto_accept = True
    alice.save()
    (p,) = _propose(alice, "Alice runs on Tuesdays")
    p.refresh_from_db()
    assert p.status == "accepted" and p.memory_id is not None
    assert MemoryItem.objects.get(pk=p.memory_id).created_by == "system"


def test_bob_cannot_see_or_decide_alices_proposals(alice: Any, bob_api: Any) -> None:
    (p,) = _propose(alice, "Alice's passport expires in May")
    assert bob_api.get("/v1/memory/proposals").json()["items"] == []
    for action in ("accept", "reject"):
        r = bob_api.post(f"/v1/memory/proposals/{p.public_id}/{action}")
        assert r.status_code == 404
    assert bob_api.post("/v1/memory/proposals/prop_nonsense/accept").status_code == 404


def test_a_grant_without_memory_read_is_refused_and_audited(alice: Any) -> None:
    memory_for(alice, "Alice's tea is green tea")
    grant = gateway.Grant(frozenset({"memory.write"}), ("short-term",))
    with pytest.raises(gateway.PermissionDenied):
        gateway.recall(user=alice, query="tea", limit=5, grant=grant)
    denied = AuditEvent.objects.get(user_id=alice.pk, action="memory.access_denied")
    assert denied.details == {"permission": "memory.read", "tier": ""}


def test_a_grant_sees_only_its_tiers(alice: Any) -> None:
    memory_for(alice, "tea notes for today", tier=Tier.SHORT_TERM)
    memory_for(alice, "tea notes for the year", tier=Tier.LONG_TERM)
    memory_for(alice, "tea notes forever", tier=Tier.PERMANENT)
    only_long = gateway.Grant(frozenset({"memory.read"}), ("long-term",))
    got = gateway.recall(user=alice, query="tea notes", limit=5, grant=only_long)
    assert [r.content for r in got] == ["tea notes for the year"]
    two = gateway.Grant(frozenset({"memory.read"}), ("short-term", "permanent"))
    got = gateway.recall(user=alice, query="tea notes", limit=5, grant=two)
    assert sorted(r.content for r in got) == [
        "tea notes for today",
        "tea notes forever",
    ]


def test_a_grant_without_memory_write_cannot_remember(alice: Any) -> None:
    reader_only = gateway.Grant(frozenset({"memory.read"}), tuple(Tier.values))
    with pytest.raises(gateway.PermissionDenied):
        gateway.remember(
            ctx=ctx_for(alice), user=alice, content="x", tags=[], grant=reader_only
        )
    assert not MemoryItem.objects.filter(user=alice).exists()
    assert AuditEvent.objects.filter(action="memory.access_denied").count() == 1
