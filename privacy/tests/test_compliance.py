"""GET /v1/compliance/check and ./cli compliance check against the real servers:
each named check passes on a healthy account and fails on the fault it is for."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from memory.models import MemoryItem, RetrievalRecord
from memory.tests.factories import memory_for
from privacy.erasure.models import Deletion
from privacy.retention.enforce import retention_enforce
from users.models import Consent

pytestmark = pytest.mark.django_db
NAMES = [
    "encryption_configured",
    "sensitive_items_have_consent",
    "retention_enforced",
    "audit_chains_intact",
    "no_erasure_overdue",
]


def _checks(api: Any) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    r = api.get("/v1/compliance/check")
    assert r.status_code == 200, r.content
    body = r.json()
    return body, {c["name"]: c for c in body["checks"]}


def test_a_healthy_account_passes_every_check(alice, alice_api):
    memory_for(alice, "my PIN is 4711", metadata={"sensitive": True})
    retention_enforce()
    body, checks = _checks(alice_api)
    assert [c["name"] for c in body["checks"]] == NAMES
    assert body["scope"] == "user"
    assert body["ok"], checks
    assert checks["encryption_configured"]["details"]["provider"] == "local"


def test_a_sensitive_memory_stored_unsealed_fails_the_encryption_check(
    alice, alice_api
):
    item = memory_for(alice, "my PIN is 4711", metadata={"sensitive": True})
    # as a row stored before sealing existed looks
    MemoryItem.objects.filter(pk=item.pk).update(content="my PIN is 4711", sealed=None)
    _, checks = _checks(alice_api)
    check = checks["encryption_configured"]
    assert not check["ok"] and check["details"]["unsealed"] == 1
    call_command("memory", "seal-existing")
    _, checks = _checks(alice_api)
    assert checks["encryption_configured"]["ok"]


def test_retention_fails_before_it_ran_and_with_a_record_past_its_window(
    alice, alice_api
):
    _, checks = _checks(alice_api)
    assert not checks["retention_enforced"]["ok"], "never enforced yet"
    retention_enforce()
    item = memory_for(alice, "tea with lemon")
    RetrievalRecord.objects.create(
        user_id=alice.pk,
        item_id=item.id,
        rank=1,
        final=0.5,
        created_at=timezone.now() - timedelta(days=400),
    )
    body, checks = _checks(alice_api)
    late = checks["retention_enforced"]["details"]["data_types"]["retrieval_records"]
    assert late["records_past_window"] == 1 and not body["ok"]
    retention_enforce(data_types=["retrieval_records"])
    _, checks = _checks(alice_api)
    assert checks["retention_enforced"]["ok"]


def test_a_sensitive_item_without_consent_fails_its_check(alice, alice_api):
    memory_for(alice, "my PIN is 4711", metadata={"sensitive": True})
    # a bug that dropped the consent but left the item visible
    Consent.objects.filter(user=alice).update(withdrawn_at=timezone.now())
    _, checks = _checks(alice_api)
    check = checks["sensitive_items_have_consent"]
    assert not check["ok"] and check["details"]["visible_without_consent"] == 1
    MemoryItem.objects.filter(user=alice).update(consent=False)  # hidden: in grace
    _, checks = _checks(alice_api)
    assert checks["sensitive_items_have_consent"]["ok"]
    Consent.objects.filter(user=alice).update(
        withdrawn_at=timezone.now() - timedelta(days=30)
    )
    _, checks = _checks(alice_api)
    assert checks["sensitive_items_have_consent"]["details"]["kept_past_purge_grace"]


def test_admins_see_the_system_and_users_only_themselves(
    alice, bob, alice_api, bob_api
):
    memory_for(bob, "bob's PIN is 1234", metadata={"sensitive": True})
    Consent.objects.filter(user=bob).update(withdrawn_at=timezone.now())
    Deletion.objects.create(
        user_id=bob.pk,
        requested_by="user",
        token_hash="0" * 64,
        requested_at=timezone.now() - timedelta(days=3),
    )
    _, mine = _checks(alice_api)
    assert mine["sensitive_items_have_consent"]["ok"], "bob's fault is not alice's"
    assert mine["no_erasure_overdue"]["ok"]
    alice.is_staff = True  # support staff: still only their own
    alice.save(update_fields=["is_staff"])
    assert _checks(alice_api)[0]["scope"] == "user"
    alice.is_superuser = True
    alice.save(update_fields=["is_superuser"])
    body, system = _checks(alice_api)
    assert body["scope"] == "system"
    assert not system["sensitive_items_have_consent"]["ok"]
    assert system["no_erasure_overdue"]["details"]["overdue"] == 1


def test_the_cli_runs_the_checks_and_fails_on_a_failed_one(alice, capsys):
    retention_enforce()
    call_command("compliance", "check", "--user", alice.email)
    assert '"audit_chains_intact"' in capsys.readouterr().out
    Deletion.objects.create(
        user_id=alice.pk,
        requested_by="user",
        token_hash="0" * 64,
        requested_at=timezone.now() - timedelta(days=3),
    )
    with pytest.raises(CommandError, match="no_erasure_overdue"):
        call_command("compliance", "check")


def test_the_system_view_holds_each_user_to_their_own_shorter_window(alice, alice_api):
    retention_enforce()
    alice_api.put(
        "/v1/compliance/retention-policies",
        {"policies": {"retrieval_records": 3}},
        format="json",
    )
    item = memory_for(alice, "tea with lemon")
    RetrievalRecord.objects.create(
        user_id=alice.pk,
        item_id=item.id,
        rank=1,
        final=0.5,
        created_at=timezone.now() - timedelta(days=6),  # inside the system's 30
    )
    alice.is_superuser = True
    alice.save(update_fields=["is_superuser"])
    _, system = _checks(alice_api)
    types = system["retention_enforced"]["details"]["data_types"]
    assert types["retrieval_records"]["records_past_window"] == 1
