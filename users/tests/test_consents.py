"""The consent ledger: grants and withdrawals over the API, audited; sensitive
memories need sensitive_memory to be stored, model_context to reach a model and
agent_access to reach an agent; withdrawal hides them at once and purges them
after the grace period."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from memory import gateway, indexing
from memory.constants import Tier
from memory.models import MemoryItem
from memory.services.consent import purge_withdrawn_sensitive
from memory.tests.factories import grant, memory_for, used_bytes
from users.models import Consent

pytestmark = pytest.mark.django_db

PIN = "My bank PIN is 4321"
AGENT = gateway.Grant(frozenset({"memory.read"}), tuple(Tier.values))


def _embed(item: MemoryItem) -> None:
    assert indexing.memory_embed_items([item.id]) == 1


def _consents(api: Any) -> dict[str, dict[str, Any]]:
    r = api.get("/v1/user/consents")
    assert r.status_code == 200
    return {c["purpose"]: c for c in r.json()["items"]}


def _sensitive(api: Any, content: str = PIN) -> Any:
    return api.post(
        "/v1/memory",
        {"type": "long-term", "content": content, "metadata": {"sensitive": True}},
        format="json",
    )


def _query(api: Any, text: str, **extra: Any) -> list[str]:
    r = api.post("/v1/memory/query", {"query": text, **extra}, format="json")
    assert r.status_code == 200, r.json()
    return [hit["item"]["content"] for hit in r.json()["results"]]


def test_grant_and_withdraw_are_kept_as_a_ledger_and_audited(alice, alice_api, bob_api):
    assert set(_consents(alice_api)) == {
        "sensitive_memory",
        "model_context",
        "agent_access",
        "telemetry",
    }
    assert not any(c["granted"] for c in _consents(alice_api).values())
    r = alice_api.post("/v1/user/consents", {"purpose": "model_context"}, format="json")
    assert r.status_code == 201 and r.json()["granted"] is True
    again = alice_api.post(
        "/v1/user/consents", {"purpose": "model_context"}, format="json"
    )
    assert again.status_code == 200
    r = alice_api.delete("/v1/user/consents/model_context")
    assert r.status_code == 200 and r.json()["granted"] is False
    alice_api.post("/v1/user/consents", {"purpose": "model_context"}, format="json")
    history = _consents(alice_api)["model_context"]["history"]
    assert [h["withdrawn_at"] is None for h in history] == [True, False]
    assert [h["source"] for h in history] == ["api", "api"]
    actions = list(
        AuditEvent.objects.filter(user_id=alice.pk, target_type="consent")
        .order_by("seq")
        .values_list("action", flat=True)
    )
    assert actions == ["consent.grant", "consent.withdraw", "consent.grant"]
    assert not _consents(bob_api)["model_context"]["granted"]


def test_unknown_purposes_are_refused_and_change_nothing(alice_api):
    r = alice_api.post("/v1/user/consents", {"purpose": "everything"}, format="json")
    assert r.status_code == 400
    r = alice_api.delete("/v1/user/consents/everything")
    assert r.status_code == 404 and r.json()["error"] == "unknown_purpose"
    assert not Consent.objects.exists()


def test_telemetry_in_settings_is_the_ledgers(alice, alice_api):
    alice_api.put("/v1/user", {"consent_telemetry": True}, format="json")
    assert _consents(alice_api)["telemetry"]["granted"]
    assert Consent.objects.get(purpose="telemetry").source == "settings"
    alice_api.delete("/v1/user/consents/telemetry")
    assert alice_api.get("/v1/user").json()["consent_telemetry"] is False


def test_a_sensitive_memory_needs_consent_to_be_kept(alice, alice_api):
    r = _sensitive(alice_api)
    assert r.status_code == 400 and r.json()["error"] == "consent_required"
    assert r.json()["details"] == {"purpose": "sensitive_memory"}
    assert not MemoryItem.objects.filter(user=alice).exists()
    assert sum(used_bytes(alice).values()) == 0
    plain = memory_for(alice, "The dog's birthday is in May")
    r = alice_api.patch(
        f"/v1/memory/{plain.public_id}",
        {"metadata": {"sensitive": True}},
        format="json",
    )
    assert r.status_code == 400 and r.json()["error"] == "consent_required"
    plain.refresh_from_db()
    assert (plain.sensitive, plain.version) == (False, 1)
    grant(alice, "sensitive_memory")
    r = _sensitive(alice_api)
    assert r.status_code == 201
    assert MemoryItem.objects.get(user=alice, sensitive=True).consent is True


def test_sensitive_items_reach_a_model_or_an_agent_only_with_that_consent(alice):
    item = memory_for(alice, PIN, metadata={"sensitive": True})

    def recalled(g: gateway.Grant) -> list[str]:
        return [
            r.content
            for r in gateway.recall(user=alice, query="bank PIN", limit=5, grant=g)
        ]

    assert PIN not in recalled(gateway.CHAT_GRANT)
    assert PIN not in recalled(AGENT)
    grant(alice, "model_context")
    _embed(item)  # sealed: found by its vector, made once model_context stands
    assert PIN in recalled(gateway.CHAT_GRANT)
    assert PIN not in recalled(AGENT)
    grant(alice, "agent_access")
    assert PIN in recalled(AGENT)


def test_withdrawal_hides_at_once_and_purges_after_the_grace_period(
    alice, alice_api, bob, settings
):
    item = memory_for(alice, PIN, metadata={"sensitive": True})
    bobs = memory_for(bob, "Bob's PIN is 9999", metadata={"sensitive": True})
    grant(alice, "model_context")
    _embed(item)
    assert _query(alice_api, "bank PIN", filters={"include_sensitive": True}) == [PIN]
    assert alice_api.delete("/v1/user/consents/sensitive_memory").status_code == 200
    item.refresh_from_db()
    assert item.consent is False
    assert _query(alice_api, "bank PIN", filters={"include_sensitive": True}) == []
    listed = alice_api.get("/v1/memory").json()["items"]
    assert item.public_id not in [m["id"] for m in listed]
    assert PIN not in [
        r.content for r in gateway.recall(user=alice, query="PIN", limit=5)
    ]
    assert AuditEvent.objects.filter(action="memory.consent_hide").count() == 1

    settings.CONSENT_PURGE_GRACE_HOURS = 72
    assert purge_withdrawn_sensitive() == 0  # still within the grace period
    Consent.objects.filter(user=alice, purpose="sensitive_memory").update(
        withdrawn_at=timezone.now() - dt.timedelta(hours=73)
    )
    assert purge_withdrawn_sensitive() == 1
    assert not MemoryItem.objects.filter(pk=item.pk).exists()
    purge = AuditEvent.objects.get(action="memory.purge", target_id=item.public_id)
    assert purge.details["reason"] == "consent_withdrawn"
    assert sum(used_bytes(alice).values()) == 0
    assert MemoryItem.objects.filter(pk=bobs.pk, consent=True).exists()


def test_granting_again_within_the_grace_period_brings_them_back(alice, alice_api):
    item = memory_for(alice, PIN, metadata={"sensitive": True})
    grant(alice, "model_context")
    _embed(item)
    alice_api.delete("/v1/user/consents/sensitive_memory")
    alice_api.post("/v1/user/consents", {"purpose": "sensitive_memory"}, format="json")
    item.refresh_from_db()
    assert item.consent is True
    assert _query(alice_api, "bank PIN", filters={"include_sensitive": True}) == [PIN]
    assert purge_withdrawn_sensitive() == 0


def test_a_hidden_item_is_not_readable_by_id_and_leaves_the_session(
    alice, alice_api, django_capture_on_commit_callbacks
):
    from django_redis import get_redis_connection

    from memory.short_term import short_term_context

    item = memory_for(alice, PIN, tier=Tier.SHORT_TERM, metadata={"sensitive": True})
    short_term_context(user_id=alice.pk)  # the session context, cached in Redis
    redis = get_redis_connection("default")
    assert redis.keys(f"kb:st:{alice.pk}:*")
    assert alice_api.get(f"/v1/memory/{item.public_id}").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        alice_api.delete("/v1/user/consents/sensitive_memory")
    assert alice_api.get(f"/v1/memory/{item.public_id}").status_code == 404
    assert alice_api.get(f"/v1/memory/{item.public_id}/history").status_code == 404
    cached = b"".join(
        str(redis.dump(k) or b"").encode() for k in redis.keys(f"kb:st:{alice.pk}:*")
    )
    assert b"4321" not in cached


def test_the_purge_takes_every_sensitive_item_without_a_standing_consent(alice):
    item = memory_for(alice, PIN, metadata={"sensitive": True})
    Consent.objects.filter(user=alice).update(
        withdrawn_at=timezone.now() - dt.timedelta(hours=100)
    )  # as if a write had raced the withdrawal: the item's flag still says True
    assert MemoryItem.objects.get(pk=item.pk).consent is True
    assert purge_withdrawn_sensitive() == 1
    assert not MemoryItem.objects.filter(pk=item.pk).exists()


def test_an_import_refuses_its_sensitive_records_without_consent(alice, alice_api):
    r = alice_api.post(
        "/v1/memory/import",
        {
            "format": "json",
            "data": [
                {
                    "content": "secret",
                    "created_at": "2021-05-01T09:30:00Z",
                    "metadata": {"sensitive": True},
                },
                {"content": "plain", "created_at": "2021-05-01T09:30:00Z"},
            ],
        },
        format="json",
    )
    assert r.status_code == 201, r.json()
    assert r.json()["imported"] == 1
    assert [x["reason"] for x in r.json()["refusals"]] == ["consent_required"]
    assert list(
        MemoryItem.objects.filter(user=alice).values_list("content", flat=True)
    ) == ["plain"]
