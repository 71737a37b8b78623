from __future__ import annotations

import itertools
import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.db.utils import Error as DatabaseError
from django.urls import reverse
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from audit.models import AuditEvent
from audit.services import GENESIS
from kimberly.context import Actor, Context
from memory.models import Quota
from memory.quotas import quota_set
from memory.tests.factories import memory_for
from users.tests.factories import DEFAULT_PASSWORD

pytestmark = pytest.mark.django_db

SECRET = "the spare key is under the blue flowerpot"
SECRET_EDIT = "moved the spare key to the mailbox"


def _events(user: Any) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(user_id=user.pk).order_by("seq"))


def _logs(api: Any, **params: Any) -> dict[str, Any]:
    resp = api.get("/v1/audit/logs", params)
    assert resp.status_code == 200, resp.json()
    return resp.json()


def _verify(*args: str) -> str:
    out = StringIO()
    call_command("audit", "verify", *args, stdout=out)
    return out.getvalue()


def _tamper(sql: str, params: list[Any]) -> None:
    """Edit the log as someone with raw SQL access who first disables the trigger."""
    with connection.cursor() as cur:
        cur.execute(
            "ALTER TABLE audit_auditevent DISABLE TRIGGER audit_auditevent_append_only"
        )
        cur.execute(sql, params)
        cur.execute(
            "ALTER TABLE audit_auditevent ENABLE TRIGGER audit_auditevent_append_only"
        )


def _memory_lifecycle_via_api(api: Any) -> str:
    """Create, edit, protect, unprotect, archive, restore, bulk and delete one item."""
    item = api.post(
        "/v1/memory", {"type": "long-term", "content": SECRET}, format="json"
    ).json()
    url = f"/v1/memory/{item['id']}"
    assert api.patch(url, {"content": SECRET_EDIT}, format="json").status_code == 200
    for action in ("protect", "unprotect", "archive", "restore"):
        assert api.post(f"{url}/{action}").status_code == 200
    bulk = api.post(
        "/v1/memory/bulk", {"action": "export", "ids": [item["id"]]}, format="json"
    )
    assert bulk.status_code == 200
    assert api.delete(url).status_code == 204
    return str(item["id"])


MEMORY_ACTIONS = [
    "memory.create",
    "memory.update",
    "memory.protect",
    "memory.unprotect",
    "memory.archive",
    "memory.restore",
    "memory.bulk",
    "memory.delete",
]


# ------------------------------------------------------------- what is logged


def test_every_memory_change_is_logged_with_who_what_and_through_which_request(
    alice,
):
    _, token = AuthToken.objects.create(user=alice)
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Bearer {token}",
        HTTP_X_REQUEST_ID="req-audit-0001",
        HTTP_USER_AGENT="kimberly-tests/1.0",
        REMOTE_ADDR="203.0.113.9",
    )

    memory_id = _memory_lifecycle_via_api(client)

    events = _events(alice)
    assert [e.action for e in events] == MEMORY_ACTIONS
    for event in events:
        assert (event.actor_type, event.actor_id) == ("user", str(alice.pk))
        assert event.request_id == "req-audit-0001"
        assert event.user_agent == "kimberly-tests/1.0"
        assert event.ip == "203.0.113.9"
    assert {e.target_id for e in events if e.action != "memory.bulk"} == {memory_id}
    assert set(events[0].details) == {"tier", "size_bytes"}
    assert events[0].details["tier"] == "long-term"
    assert events[1].details["changed"] == ["content"]
    assert events[6].details["action"] == "export"
    assert events[6].details["ids"] == [memory_id]


@pytest.mark.parametrize("action", ["archive", "delete", "protect"])
def test_a_bulk_request_is_one_event_listing_the_ids(alice_api, alice, action):
    ids = [memory_for(alice, f"note {n}").public_id for n in range(3)]
    alice_api.post("/v1/memory/bulk", {"action": action, "ids": ids}, format="json")
    bulk = AuditEvent.objects.get(user_id=alice.pk, action="memory.bulk")
    assert bulk.details["action"] == action
    assert sorted(bulk.details["ids"]) == sorted(ids)
    assert bulk.details["changed"] == 3


def test_refused_writes_leave_no_memory_event(alice_api, alice):
    item = memory_for(alice, "the only write that happened")
    quota_set(
        ctx=Context(Actor.system("ops")),
        user_id=alice.pk,
        tier="permanent",
        limit_bytes=10,
    )
    refused = [
        alice_api.post(
            "/v1/memory", {"type": "forever", "content": "x"}, format="json"
        ),
        alice_api.post(
            "/v1/memory", {"type": "long-term", "content": " "}, format="json"
        ),
        alice_api.post(
            "/v1/memory", {"type": "permanent", "content": "x"}, format="json"
        ),
        alice_api.post(f"/v1/memory/mem_{alice.pk}/archive"),
        alice_api.post(
            "/v1/memory/bulk",
            {"action": "delete", "ids": [item.public_id, f"mem_{alice.pk}"]},
            format="json",
        ),
    ]
    assert [r.status_code for r in refused] == [400, 400, 429, 404, 404]
    memory_events = AuditEvent.objects.filter(action__startswith="memory.")
    assert [(e.action, e.target_id) for e in memory_events] == [
        ("memory.create", item.public_id)
    ]


def test_a_quota_change_is_logged(alice):
    quota_set(
        ctx=Context(Actor.system("ops")),
        user_id=alice.pk,
        tier="permanent",
        limit_bytes=77,
    )
    event = AuditEvent.objects.get(user_id=alice.pk, action="quota.change")
    assert (event.actor_type, event.actor_id) == ("system", "ops")
    assert event.details == {"tier": "permanent", "before": None, "after": 77}


def test_signup_and_login_are_logged(api):
    signup = api.post(
        "/v1/signup",
        {"email": "carol@example.com", "password": DEFAULT_PASSWORD},
        format="json",
        REMOTE_ADDR="198.51.100.4",
    )
    assert signup.status_code == 201
    login = api.post(
        "/v1/login",
        {"email": "carol@example.com", "password": DEFAULT_PASSWORD},
        format="json",
        REMOTE_ADDR="198.51.100.4",
    )
    assert login.status_code == 200

    api.credentials(HTTP_AUTHORIZATION=f"Bearer {login.json()['token']}")
    items = _logs(api)["items"]
    assert [e["action"] for e in items] == ["auth.login", "auth.signup"]
    assert {e["ip"] for e in items} == {"198.51.100.4"}
    assert DEFAULT_PASSWORD not in json.dumps(items)
    assert login.json()["token"] not in json.dumps(items)


def test_a_failed_login_is_logged_in_the_targeted_users_log(api, alice, alice_api):
    resp = api.post(
        "/v1/login",
        {"email": "alice@example.com", "password": "not her password"},
        format="json",
        REMOTE_ADDR="192.0.2.66",
    )
    assert resp.status_code == 401

    items = _logs(alice_api, action="auth.login_failed")["items"]

    assert len(items) == 1
    assert items[0]["ip"] == "192.0.2.66"
    assert items[0]["actor_type"] == "anonymous"
    assert "not her password" not in json.dumps(items)


def test_a_failed_login_for_an_unknown_email_is_logged_without_a_user(api):
    api.post(
        "/v1/login",
        {"email": "nobody@example.com", "password": "guess"},
        format="json",
    )
    event = AuditEvent.objects.get(action="auth.login_failed")
    assert event.user_id is None
    assert "guess" not in json.dumps(event.details)


def test_a_settings_change_is_logged_with_the_new_values(alice_api, alice):
    alice_api.put(
        "/v1/user",
        {"embedding_enabled": False, "consent_telemetry": True},
        format="json",
    )
    alice_api.put("/v1/user", {"embedding_enabled": False}, format="json")  # no change

    items = _logs(alice_api, action="settings.change")["items"]

    assert len(items) == 1
    assert items[0]["details"] == {"embedding_enabled": False}
    # Telemetry is a consent: recorded in the ledger, audited as its grant.
    (grant,) = _logs(alice_api, action="consent.grant")["items"]
    assert grant["target_id"] == "telemetry"
    assert grant["details"] == {"source": "settings"}


def test_audit_details_never_contain_memory_content(alice_api, alice):
    memory_id = _memory_lifecycle_via_api(alice_api)
    item = memory_for(alice, SECRET, metadata={"tags": ["house"]})
    alice_api.post(
        "/v1/memory/bulk", {"action": "delete", "ids": [item.public_id]}, format="json"
    )

    events = AuditEvent.objects.filter(user_id=alice.pk)
    assert events.count() == len(MEMORY_ACTIONS) + 2
    for event in events:
        row = json.dumps(
            [event.details, event.target_id, event.target_type, event.action]
        )
        for secret in (SECRET, SECRET_EDIT, "spare key", "flowerpot", "mailbox"):
            assert secret not in row, (event.action, secret)
    api_text = json.dumps(_logs(alice_api, per_page=100))
    assert "spare key" not in api_text
    assert memory_id in api_text


# ------------------------------------------------------------- GET /audit/logs


def test_audit_logs_are_newest_first_with_the_event_fields(alice_api, alice):
    _memory_lifecycle_via_api(alice_api)

    body = _logs(alice_api, per_page=100)

    assert set(body) == {"items", "page", "per_page", "total"}
    assert [e["action"] for e in body["items"]] == list(reversed(MEMORY_ACTIONS))
    assert body["total"] == len(MEMORY_ACTIONS)
    assert set(body["items"][0]) >= {
        "id",
        "action",
        "actor_type",
        "actor_id",
        "target_type",
        "target_id",
        "request_id",
        "ip",
        "user_agent",
        "details",
        "created_at",
        "prev_hash",
        "hash",
    }


def test_audit_logs_filter_by_action(alice_api, alice):
    _memory_lifecycle_via_api(alice_api)
    items = _logs(alice_api, action="memory.archive")["items"]
    assert [e["action"] for e in items] == ["memory.archive"]
    assert _logs(alice_api, action="memory.nothing")["items"] == []


def test_audit_logs_filter_by_time_window(alice_api, alice):
    memory_for(alice, "before")
    start = timezone.now()
    memory_for(alice, "during", tier="short-term")
    end = timezone.now()
    memory_for(alice, "after", tier="permanent")

    def tiers(**params: Any) -> list[str]:
        return [e["details"]["tier"] for e in _logs(alice_api, **params)["items"]]

    assert tiers(since=start.isoformat()) == ["permanent", "short-term"]
    assert tiers(until=start.isoformat()) == ["long-term"]
    assert tiers(since=start.isoformat(), until=end.isoformat()) == ["short-term"]


def test_audit_logs_are_paginated(alice_api, alice):
    for n in range(5):
        memory_for(alice, f"note {n}")
    everything = _logs(alice_api, per_page=100)["items"]

    pages = [_logs(alice_api, per_page=2, page=p) for p in (1, 2, 3, 4)]

    assert [len(p["items"]) for p in pages] == [2, 2, 1, 0]
    assert all(p["total"] == 5 for p in pages)
    assert [e["id"] for p in pages for e in p["items"]] == [e["id"] for e in everything]


@pytest.mark.parametrize(
    "params, field",
    [
        ({"since": "last tuesday"}, "since"),
        ({"until": "2024-02-30"}, "until"),
        ({"per_page": 101}, "per_page"),
        ({"page": 0}, "page"),
        ({"user_id": "someone-else"}, "user_id"),
    ],
)
def test_bad_audit_log_filters_are_400(alice_api, params, field):
    resp = alice_api.get("/v1/audit/logs", params)
    assert resp.status_code == 400
    assert field in resp.json()["details"]["fields"]


def test_audit_logs_need_authentication(api, alice):
    memory_for(alice)
    assert api.get("/v1/audit/logs").status_code == 401


# ---------------------------------------------------------- append-only table


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_auditevent SET action = 'x'",
        "UPDATE audit_auditevent SET details = '{}'::jsonb",
        "DELETE FROM audit_auditevent",
    ],
)
def test_the_database_refuses_to_change_or_delete_audit_events(alice, sql):
    memory_for(alice)
    before = list(AuditEvent.objects.order_by("id").values())
    assert before

    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cur,
    ):
        cur.execute(sql)

    assert list(AuditEvent.objects.order_by("id").values()) == before


def test_the_database_refuses_changes_through_the_orm_too(alice):
    memory_for(alice)
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(user_id=alice.pk).update(details={})
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(user_id=alice.pk).delete()
    assert AuditEvent.objects.filter(user_id=alice.pk).count() == 1


# ------------------------------------------------------------------ hash chain


def test_each_event_links_to_the_previous_one_of_the_same_user(alice, bob):
    for n in range(3):
        memory_for(alice, f"alice {n}")
        memory_for(bob, f"bob {n}")

    for user in (alice, bob):
        events = _events(user)
        assert [e.seq for e in events] == [1, 2, 3]
        assert events[0].prev_hash == GENESIS
        for previous, event in itertools.pairwise(events):
            assert event.prev_hash == previous.hash
        assert len({e.hash for e in events}) == 3
        assert all(len(e.hash) == 64 for e in events)


def test_audit_verify_passes_on_an_intact_log(alice, bob, api):
    for n in range(3):
        memory_for(alice, f"alice {n}")
    memory_for(bob, "bob")
    api.post(
        "/v1/login", {"email": "nobody@example.com", "password": "x"}, format="json"
    )

    output = _verify()

    assert "audit OK" in output
    assert f"{AuditEvent.objects.count()} events" in output
    assert "3 chains" in output
    assert "audit OK: 3 events in 1 chains" in _verify("--user", "alice@example.com")


def test_audit_verify_names_the_event_whose_details_were_edited(alice, bob):
    for n in range(4):
        memory_for(alice, f"alice {n}")
        memory_for(bob, f"bob {n}")
    victim = _events(alice)[2]

    _tamper(
        "UPDATE audit_auditevent SET details = %s::jsonb WHERE id = %s",
        [json.dumps({"tier": "permanent", "size_bytes": 1}), victim.id],
    )

    with pytest.raises(CommandError, match=rf"event id={victim.id}\b") as exc:
        _verify()
    assert "seq 3" in str(exc.value)
    with pytest.raises(CommandError, match=rf"event id={victim.id}\b"):
        _verify("--user", "alice@example.com")
    # Bob's chain was not touched and still verifies.
    assert "audit OK" in _verify("--user", "bob@example.com")


def test_audit_verify_notices_an_event_deleted_from_the_middle(alice):
    for n in range(4):
        memory_for(alice, f"alice {n}")
    events = _events(alice)

    _tamper("DELETE FROM audit_auditevent WHERE id = %s", [events[1].id])

    with pytest.raises(CommandError, match=rf"event id={events[2].id}\b"):
        _verify()


def test_audit_verify_notices_a_rewritten_hash(alice):
    for n in range(3):
        memory_for(alice, f"alice {n}")
    events = _events(alice)

    # Re-hashing one event without re-hashing the rest breaks the next link.
    _tamper(
        "UPDATE audit_auditevent SET hash = %s WHERE id = %s", ["f" * 64, events[0].id]
    )

    with pytest.raises(CommandError, match=rf"event id={events[0].id}\b"):
        _verify()


def test_audit_verify_for_an_unknown_user_is_a_command_error():
    with pytest.raises(CommandError):
        _verify("--user", "nobody@example.com")


# ---------------------------------------------------------------------- admin


def test_admin_shows_audit_events_read_only(admin_client, alice):
    memory_for(alice)
    event = AuditEvent.objects.get(user_id=alice.pk)

    assert (
        admin_client.get(reverse("admin:audit_auditevent_changelist")).status_code
        == 200
    )
    change_url = reverse("admin:audit_auditevent_change", args=[event.pk])
    page = admin_client.get(change_url)
    assert page.status_code == 200
    assert "memory.create" in page.content.decode()
    assert admin_client.get(reverse("admin:audit_auditevent_add")).status_code == 403
    assert admin_client.post(change_url, {"action": "x"}).status_code == 403
    delete_url = reverse("admin:audit_auditevent_delete", args=[event.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    event.refresh_from_db()
    assert event.action == "memory.create"


def test_a_quota_override_made_in_the_admin_is_audited(admin_client, alice):
    memory_for(alice)
    quota = Quota.objects.get(user=alice, tier="long-term")

    admin_client.post(
        reverse("admin:memory_quota_change", args=[quota.pk]), {"limit_bytes": "5000"}
    )

    quota.refresh_from_db()
    assert quota.limit_bytes == 5000
    event = AuditEvent.objects.get(user_id=alice.pk, action="quota.change")
    assert event.details == {"tier": "long-term", "before": None, "after": 5000}


def test_users_who_are_not_staff_cannot_open_the_audit_admin(client, alice):
    client.force_login(alice)
    resp = client.get(reverse("admin:audit_auditevent_changelist"))
    assert resp.status_code == 302
    assert "/admin/login/" in resp["Location"]
