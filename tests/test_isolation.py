"""Persona tests: bob must see nothing of alice's, and change nothing of hers.

Every memory and audit endpoint is tried with bob's token against alice's ids;
each answer is the same 404 a missing id gets (no existence oracle), and alice's
item, history, quota usage and audit log stay exactly as they were.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.forms.models import model_to_dict
from django.utils import timezone

from audit.models import AuditEvent
from kimberly.context import Actor, Context
from memory.models import MemoryItem, MemoryVersion, Quota
from memory.quotas import quota_set
from memory.tests.factories import assert_usage_is_exact, memory_for

pytestmark = pytest.mark.django_db

ALICE_SECRET = "Alice's safe combination is 31-4-15"


@pytest.fixture
def alice_item(alice: Any) -> MemoryItem:
    return memory_for(
        alice,
        ALICE_SECRET,
        metadata={"tags": ["secret", "home"], "source": "chat"},
    )


@pytest.fixture
def bob_item(bob: Any) -> MemoryItem:
    return memory_for(bob, "Bob parks on level 2", metadata={"tags": ["car"]})


def _snapshot(user: Any) -> dict[str, Any]:
    """Everything of a user that another user must never be able to change."""
    return {
        "items": sorted(
            (
                model_to_dict(i) | {"id": str(i.pk)}
                for i in MemoryItem.objects.filter(user=user)
            ),
            key=lambda d: d["id"],
        ),
        "versions": list(
            MemoryVersion.objects.filter(item__user=user)
            .order_by("item_id", "version")
            .values_list("item_id", "version", "content", "tier", "status")
        ),
        "quotas": sorted(
            Quota.objects.filter(user=user).values_list(
                "tier", "used_bytes", "limit_bytes"
            )
        ),
        "audit": list(
            AuditEvent.objects.filter(user_id=user.pk)
            .order_by("seq")
            .values_list("hash", flat=True)
        ),
    }


def _missing_body(resp: Any, memory_id: str) -> dict[str, Any]:
    """The response body with the requested id taken out, to compare 404s."""
    body = resp.json()
    body["message"] = body["message"].replace(memory_id, "<id>")
    return body


ITEM_REQUESTS = [
    pytest.param("get", "", None, None, id="GET item"),
    pytest.param("patch", "", {"content": "bob was here"}, None, id="PATCH content"),
    pytest.param("patch", "", {"type": "permanent"}, None, id="PATCH type"),
    pytest.param(
        "patch", "", {"metadata": {"tags": ["bob"]}}, None, id="PATCH metadata"
    ),
    pytest.param("delete", "", None, None, id="DELETE item"),
    pytest.param("get", "/history", None, None, id="GET history"),
    pytest.param("post", "/protect", None, None, id="protect"),
    pytest.param("post", "/unprotect", None, "protect", id="unprotect"),
    pytest.param("post", "/archive", None, None, id="archive"),
    pytest.param("post", "/restore", None, "archive", id="restore"),
]


@pytest.mark.parametrize("method, suffix, payload, prepare", ITEM_REQUESTS)
def test_bob_gets_404_for_alice_item_and_changes_nothing(
    alice_api,
    bob_api,
    alice,
    bob,
    alice_item,
    bob_item,
    method,
    suffix,
    payload,
    prepare,
):
    if prepare:
        # Put alice's item in the state the action would change (e.g. archived
        # before bob tries to restore it).
        assert (
            alice_api.post(f"/v1/memory/{alice_item.public_id}/{prepare}").status_code
            == 200
        )
    before_alice, before_bob = _snapshot(alice), _snapshot(bob)
    alice_view = alice_api.get(f"/v1/memory/{alice_item.public_id}").json()
    nowhere = f"mem_{uuid.uuid4()}"

    def call(memory_id: str) -> Any:
        url = f"/v1/memory/{memory_id}{suffix}"
        if payload is None:
            return getattr(bob_api, method)(url)
        return getattr(bob_api, method)(url, payload, format="json")

    resp = call(alice_item.public_id)

    assert resp.status_code == 404
    assert resp.json()["error"] == "not_found"
    assert ALICE_SECRET not in resp.content.decode()
    # Indistinguishable from an id that does not exist at all.
    assert _missing_body(resp, alice_item.public_id) == _missing_body(
        call(nowhere), nowhere
    )
    assert _snapshot(alice) == before_alice
    assert _snapshot(bob) == before_bob
    assert alice_api.get(f"/v1/memory/{alice_item.public_id}").json() == alice_view


@pytest.mark.parametrize(
    "params, bobs_visible",
    [
        ({}, 1),
        ({"status": "all"}, 1),
        ({"status": "archived"}, 0),
        ({"q": "combination"}, 0),
        ({"q": "a"}, 1),
        ({"tags": "secret,home"}, 0),
        ({"tags": "secret", "tags_mode": "all"}, 0),
        ({"type": "long-term"}, 1),
        ({"source": "chat"}, 0),
        ({"since": "2000-01-01T00:00:00Z"}, 1),
        ({"ordering": "-size_bytes", "per_page": 100}, 1),
        ({"page": 1, "per_page": 1}, 1),
    ],
)
def test_bob_never_sees_alice_items_in_his_list(
    alice, bob_api, bob, params, bobs_visible
):
    mine = memory_for(bob, "Bob's note about parking")
    memory_for(
        alice, ALICE_SECRET, metadata={"tags": ["secret", "home"], "source": "chat"}
    )
    memory_for(
        alice, "Alice's archived note", archived=True, metadata={"tags": ["secret"]}
    )

    resp = bob_api.get("/v1/memory", params)

    assert resp.status_code == 200
    body = resp.json()
    assert [i["id"] for i in body["items"]] == [mine.public_id] * bobs_visible
    assert body["total"] == bobs_visible
    assert "Alice" not in resp.content.decode()


def test_bob_never_sees_alice_numbers_in_his_metrics(alice, alice_api, bob_api, bob):
    memory_for(alice, ALICE_SECRET)
    memory_for(alice, "short", tier="short-term")
    memory_for(alice, "archived", archived=True, tier="permanent")
    alice_api.post("/v1/memory", {"type": "permanent", "content": "p"}, format="json")
    quota_set(
        ctx=Context(Actor.system("test")),
        user_id=alice.pk,
        tier="long-term",
        limit_bytes=9999,
    )

    tiers = bob_api.get("/v1/memory/metrics").json()["tiers"]

    assert {
        t: (v["used_bytes"], v["active_items"], v["archived_items"], v["override"])
        for t, v in tiers.items()
    } == dict.fromkeys(("short-term", "long-term", "permanent"), (0, 0, 0, False))
    assert tiers["long-term"]["quota_bytes"] == 2097152
    alice_tiers = alice_api.get("/v1/memory/metrics").json()["tiers"]
    assert alice_tiers["long-term"]["active_items"] == 1
    assert alice_tiers["long-term"]["quota_bytes"] == 9999


def test_bob_never_sees_alice_events_in_his_audit_log(
    alice, alice_api, bob_api, bob, alice_item, bob_item
):
    alice_api.patch(
        f"/v1/memory/{alice_item.public_id}", {"content": "v2"}, format="json"
    )
    alice_api.post(f"/v1/memory/{alice_item.public_id}/archive")
    alice_api.put("/v1/user", {"consent_telemetry": True}, format="json")

    for params in (
        {},
        {"action": "memory.create"},
        {"action": "memory.update"},
        {"action": "settings.change"},
        {"since": "2000-01-01T00:00:00Z"},
        {"per_page": 100},
    ):
        resp = bob_api.get("/v1/audit/logs", params)
        assert resp.status_code == 200
        events = resp.json()["items"]
        assert alice_item.public_id not in resp.content.decode()
        assert str(alice.pk) not in resp.content.decode()
        assert {e["id"] for e in events} <= set(
            AuditEvent.objects.filter(user_id=bob.pk).values_list("id", flat=True)
        )
    all_bob = bob_api.get("/v1/audit/logs", {"per_page": 100}).json()
    assert [e["action"] for e in all_bob["items"]] == ["memory.create"]
    assert all_bob["items"][0]["target_id"] == bob_item.public_id


BULK_ACTIONS = [
    pytest.param("archive", None, id="archive"),
    pytest.param("restore", "archive", id="restore"),
    pytest.param("protect", None, id="protect"),
    pytest.param("unprotect", "protect", id="unprotect"),
    pytest.param("delete", None, id="delete"),
    pytest.param("export", None, id="export"),
]


@pytest.mark.parametrize("action, prepare", BULK_ACTIONS)
def test_bob_bulk_with_one_of_alice_ids_fails_whole(
    alice, alice_api, bob, bob_api, alice_item, action, prepare
):
    bob_items = [memory_for(bob, f"Bob's note {n}") for n in range(2)]
    ids = [i.public_id for i in bob_items]
    if prepare:
        for memory_id in (alice_item.public_id, *ids):
            owner = alice_api if memory_id == alice_item.public_id else bob_api
            assert owner.post(f"/v1/memory/{memory_id}/{prepare}").status_code == 200
    before_alice, before_bob = _snapshot(alice), _snapshot(bob)

    resp = bob_api.post(
        "/v1/memory/bulk",
        {"action": action, "ids": [ids[0], alice_item.public_id, ids[1]]},
        format="json",
    )

    assert resp.status_code == 404
    assert resp.json()["error"] == "not_found"
    assert resp.json()["details"]["missing"] == [alice_item.public_id]
    assert ALICE_SECRET not in resp.content.decode()
    assert _snapshot(alice) == before_alice
    assert _snapshot(bob) == before_bob
    assert_usage_is_exact(alice)
    assert_usage_is_exact(bob)


def test_bob_reusing_alice_idempotency_key_gets_his_own_item(
    alice_api, bob_api, alice, bob
):
    body = {"type": "long-term", "content": "the same words"}
    hers = alice_api.post("/v1/memory", body, format="json", HTTP_IDEMPOTENCY_KEY="k1")

    same = bob_api.post("/v1/memory", body, format="json", HTTP_IDEMPOTENCY_KEY="k1")

    assert same.status_code == 201
    assert "Idempotent-Replayed" not in same
    assert same.json()["id"] != hers.json()["id"]
    assert MemoryItem.objects.get(pk=same.json()["id"][4:]).user == bob
    assert MemoryItem.objects.filter(user=alice).count() == 1
    assert MemoryItem.objects.filter(user=bob).count() == 1


def test_a_key_alice_used_is_no_conflict_for_bob(alice_api, bob_api, bob):
    alice_api.post(
        "/v1/memory",
        {"type": "long-term", "content": "hers"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="only-hers",
    )
    resp = bob_api.post(
        "/v1/memory",
        {"type": "long-term", "content": "his"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="only-hers",
    )
    assert resp.status_code == 201
    assert resp.json()["content"] == "his"


def test_bob_cannot_revert_alices_memory(alice_api, bob_api):
    mid = alice_api.post(
        "/v1/memory", {"type": "long-term", "content": "alice v1"}, format="json"
    ).json()["id"]
    alice_api.patch(f"/v1/memory/{mid}", {"content": "alice v2"}, format="json")
    resp = bob_api.post(f"/v1/memory/{mid}/revert", {"version": 1}, format="json")
    assert resp.status_code == 404
    assert alice_api.get(f"/v1/memory/{mid}").json()["content"] == "alice v2"


def test_bob_sees_and_changes_nothing_of_alices_privacy(
    alice, bob, alice_api, bob_api, alice_item
):
    """The privacy endpoints (issue 12): consents, exports, the erasure receipt,
    retention policies and compliance checks answer bob about bob only."""
    from privacy.erasure.models import Deletion
    from privacy.exports.models import DataExport

    alice_api.post("/v1/user/consents", {"purpose": "telemetry"}, format="json")
    alice_api.put(
        "/v1/compliance/retention-policies",
        {"policies": {"chat_messages": 7}},
        format="json",
    )
    export = DataExport.objects.create(user=alice, status="failed")
    deletion = Deletion.objects.create(  # and overdue: alice's fault, not bob's
        user_id=alice.pk,
        requested_by="user",
        token_hash="0" * 64,
        requested_at=timezone.now() - timedelta(days=3),
    )
    before = _snapshot(alice)
    consents_before = alice_api.get("/v1/user/consents").json()

    assert bob_api.get(f"/v1/user/export/{export.public_id}").status_code == 404
    assert bob_api.get("/v1/user/exports").json()["items"] == []
    receipt = f"/v1/user/delete/{deletion.public_id}?receipt_token=guess"
    assert bob_api.get(receipt).status_code == 404
    assert bob_api.delete("/v1/user/consents/telemetry").status_code == 200
    assert (
        bob_api.put(
            "/v1/compliance/retention-policies",
            {"policies": {"chat_messages": 1}},
            format="json",
        ).status_code
        == 200
    )
    theirs = bob_api.get("/v1/compliance/retention-policies").json()["items"]
    assert {p["data_type"]: p["user_days"] for p in theirs}["chat_messages"] == 1
    checks = bob_api.get("/v1/compliance/check").json()
    assert checks["scope"] == "user"
    overdue = next(c for c in checks["checks"] if c["name"] == "no_erasure_overdue")
    assert overdue["ok"] and overdue["details"]["overdue"] == 0

    assert _snapshot(alice) == before
    assert alice_api.get("/v1/user/consents").json() == consents_before
    mine = alice_api.get("/v1/compliance/retention-policies").json()["items"]
    assert {p["data_type"]: p["user_days"] for p in mine}["chat_messages"] == 7
