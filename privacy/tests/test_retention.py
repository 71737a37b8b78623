"""Retention policies and their nightly enforcement, against the real servers:
the API's rules, what each data type's pass deletes (and for whom), and audit
chains that are cut yet still verify."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from audit.models import AuditAnchor, AuditEvent
from audit.retention import audit_prune_chain
from audit.selectors import audit_verify
from chat.models import Conversation, Message
from memory.models import MemoryItem, RetrievalRecord
from memory.tests.factories import assert_usage_is_exact, ctx_for, memory_for
from privacy.exports.models import DataExport
from privacy.retention.enforce import records_before, retention_enforce
from privacy.retention.models import DataType, RetentionRun

pytestmark = pytest.mark.django_db
URL = "/v1/compliance/retention-policies"


def _put(api: Any, policies: dict[str, Any], **extra: Any) -> Any:
    return api.put(URL, {"policies": policies, **extra}, format="json")


def _days(api: Any) -> dict[str, dict[str, Any]]:
    body = api.get(URL).json()
    return {p["data_type"]: p for p in body["items"]}


def test_every_data_type_has_a_system_default(alice_api, settings):
    days = _days(alice_api)
    assert set(days) == {
        "chat_messages",
        "short_term_memories",
        "retrieval_records",
        "exports",
        "audit_events",
        "telemetry",
    }
    assert days["retrieval_records"]["system_days"] == settings.RETRIEVAL_RECORDS_DAYS
    assert days["chat_messages"]["user_days"] is None
    assert (
        days["chat_messages"]["effective_days"] == days["chat_messages"]["system_days"]
    )


def test_a_user_may_only_shorten_and_a_refused_change_changes_nothing(
    alice_api, bob_api, alice
):
    system = _days(alice_api)["chat_messages"]["system_days"]
    r = _put(alice_api, {"chat_messages": 7})
    assert r.status_code == 200, r.content
    assert _days(alice_api)["chat_messages"]["effective_days"] == 7
    assert _days(bob_api)["chat_messages"]["effective_days"] == system

    r = _put(alice_api, {"exports": 3, "audit_events": system * 10})
    assert r.status_code == 400 and r.json()["error"] == "retention_too_long"
    assert r.json()["details"]["data_type"] == "audit_events"
    assert _days(alice_api)["exports"]["user_days"] is None, "all or nothing"

    for bad in ({"chat_messages": 0}, {"chat_messages": "7"}, {"nope": 3}):
        r = _put(alice_api, bad)
        assert r.status_code == 400, bad
        assert r.json()["error"] == "validation_error"
    assert _days(alice_api)["chat_messages"]["user_days"] == 7

    assert _put(alice_api, {"chat_messages": None}).status_code == 200
    assert _days(alice_api)["chat_messages"]["user_days"] is None
    actions = AuditEvent.objects.filter(user_id=alice.pk, action="retention.set")
    assert actions.count() == 2


def test_only_an_administrator_sets_the_system_defaults(alice_api, alice):
    r = _put(alice_api, {"exports": 3}, scope="system")
    assert r.status_code == 403 and r.json()["error"] == "admin_only"
    alice.is_superuser = True
    alice.save(update_fields=["is_superuser"])
    r = _put(alice_api, {"exports": 3}, scope="system")
    assert r.status_code == 200, r.content
    assert _days(alice_api)["exports"]["system_days"] == 3
    assert AuditEvent.objects.filter(
        user_id=None, action="retention.system_set"
    ).exists()
    # a user's value is capped by a system default lowered below it
    assert _put(alice_api, {"audit_events": 100}).status_code == 200
    assert _put(alice_api, {"audit_events": 50}, scope="system").status_code == 200
    assert _days(alice_api)["audit_events"]["effective_days"] == 50


def _message(user: Any, conversation: Conversation, days_ago: float) -> Message:
    return Message.objects.create(
        conversation=conversation,
        user=user,
        role="user",
        content="hello",
        created_at=timezone.now() - timedelta(days=days_ago),
    )


def test_chat_messages_go_after_the_users_window_and_empty_conversations_go(
    alice, bob, alice_api
):
    _put(alice_api, {"chat_messages": 7})
    mixed = Conversation.objects.create(user=alice, title="mixed", message_count=2)
    old_only = Conversation.objects.create(user=alice, title="old", message_count=1)
    bobs = Conversation.objects.create(user=bob, title="bob", message_count=1)
    _message(alice, mixed, 10)
    kept = _message(alice, mixed, 1)
    _message(alice, old_only, 10)
    bob_old = _message(bob, bobs, 10)

    assert retention_enforce(data_types=["chat_messages"]) == {"chat_messages": 2}
    assert list(Message.objects.filter(user=alice)) == [kept]
    mixed.refresh_from_db()
    assert mixed.message_count == 1 and mixed.transcript_messages == 0
    assert not Conversation.objects.filter(pk=old_only.pk).exists()
    assert Message.objects.filter(pk=bob_old.pk).exists(), "bob keeps the default"
    events = AuditEvent.objects.filter(user_id=alice.pk, action="chat.retention")
    assert events.count() == 2


def test_short_term_memories_are_purged_with_their_quota_but_protected_stay(alice, bob):
    old = memory_for(alice, "a passing thought", tier="short-term")
    keep = memory_for(alice, "keep this thought", tier="short-term", protected=True)
    long = memory_for(alice, "a long-term fact")
    bobs = memory_for(bob, "bob's passing thought", tier="short-term")
    future = timezone.now() + timedelta(days=31)

    done = retention_enforce(data_types=["short_term_memories"], now=future)
    assert done == {"short_term_memories": 2}
    assert not MemoryItem.objects.filter(pk__in=[old.pk, bobs.pk]).exists()
    assert MemoryItem.objects.filter(pk__in=[keep.pk, long.pk]).count() == 2
    assert_usage_is_exact(alice)
    purge = AuditEvent.objects.get(user_id=alice.pk, action="memory.purge")
    assert purge.details["reason"] == "retention"


def test_retrieval_records_exports_and_telemetry_follow_their_windows(
    alice, bob, alice_api
):
    item = memory_for(alice, "tea with lemon")
    for user_id, days in ((alice.pk, 5), (bob.pk, 5), (alice.pk, 1)):
        RetrievalRecord.objects.create(
            user_id=user_id,
            item_id=item.id,
            rank=1,
            final=0.5,
            created_at=timezone.now() - timedelta(days=days),
        )
    export = DataExport.objects.create(user=alice, status="failed")
    DataExport.objects.filter(pk=export.pk).update(
        created_at=timezone.now() - timedelta(days=4)
    )
    running = DataExport.objects.create(user=alice, status="running")
    DataExport.objects.filter(pk=running.pk).update(
        created_at=timezone.now() - timedelta(days=4)
    )
    _put(alice_api, {"retrieval_records": 3, "exports": 3})

    done = retention_enforce(data_types=["retrieval_records", "exports"])
    assert done == {"retrieval_records": 1, "exports": 1}
    assert RetrievalRecord.objects.filter(user_id=bob.pk).count() == 1
    assert not DataExport.objects.filter(pk=export.pk).exists()
    assert DataExport.objects.filter(pk=running.pk).exists(), "left to finish"
    runs = RetentionRun.objects.filter(data_type="retrieval_records")
    assert runs.get().users_with_own_policy == 1


def _long_ago(days: float) -> Any:
    """Everything written inside happened `days` ago (audit events can never be
    backdated afterwards: the table refuses UPDATE)."""
    return mock.patch(
        "django.utils.timezone.now", return_value=timezone.now() - timedelta(days=days)
    )


def test_an_audit_chain_cut_by_retention_still_verifies(alice, alice_api, bob):
    with _long_ago(800):
        for n in range(3):
            memory_for(alice, f"fact number {n}")
    with _long_ago(200):
        memory_for(alice, "a fact of last spring")
    recent = memory_for(alice, "a fact of this week")
    bobs = AuditEvent.objects.filter(user_id=bob.pk).count()
    old = AuditEvent.objects.filter(
        user_id=alice.pk, created_at__lt=timezone.now() - timedelta(days=700)
    ).count()
    assert old >= 3

    assert retention_enforce(data_types=["audit_events"])["audit_events"] == old
    left = list(AuditEvent.objects.filter(user_id=alice.pk).order_by("seq"))
    assert left[-1].action == "audit.prune"
    assert {e.target_id for e in left} >= {recent.public_id}, "recent events stay"
    assert AuditEvent.objects.filter(user_id=bob.pk).count() == bobs
    assert audit_verify(user_id=alice.pk).first_break is None
    assert audit_verify().first_break is None, "every chain, the global one too"
    assert retention_enforce(data_types=["audit_events"]) == {"audit_events": 0}

    # the chain goes on from the cut, and can be cut again (a shorter window)
    memory_for(alice, "a later fact")
    assert audit_verify(user_id=alice.pk).first_break is None
    assert _put(alice_api, {"audit_events": 100}).status_code == 200
    assert retention_enforce(data_types=["audit_events"])["audit_events"] >= 1
    assert AuditAnchor.objects.filter(user_id=alice.pk).count() == 2
    assert audit_verify(user_id=alice.pk).first_break is None
    call_command("audit", "verify", "--user", str(alice.pk))


def test_a_user_shortens_their_chain_but_not_below_the_floor(
    alice, alice_api, settings
):
    r = _put(alice_api, {"audit_events": settings.RETENTION_AUDIT_EVENTS_MIN_DAYS - 1})
    assert r.status_code == 400 and r.json()["error"] == "retention_too_short"
    assert r.json()["details"]["min_days"] == settings.RETENTION_AUDIT_EVENTS_MIN_DAYS
    with _long_ago(200):
        memory_for(alice, "an old fact")
    assert _put(alice_api, {"audit_events": 100}).status_code == 200
    assert retention_enforce(data_types=["audit_events"])["audit_events"] >= 1
    assert audit_verify(user_id=alice.pk).first_break is None
    run = RetentionRun.objects.get(data_type="audit_events")
    assert run.users_with_own_policy == 1 and run.error == ""


def test_a_cut_is_never_less_than_a_day_back(alice):
    memory_for(alice, "a fact")
    with pytest.raises(ValueError):
        audit_prune_chain(
            ctx=ctx_for(alice),
            owner=alice.pk,
            cutoff=timezone.now() - timedelta(hours=1),
        )
    assert AuditEvent.objects.filter(user_id=alice.pk).exists()


def test_the_database_refuses_any_other_cut_of_the_audit_log(alice):
    memory_for(alice, "a fact")
    event = AuditEvent.objects.filter(user_id=alice.pk).first()
    assert event is not None
    delete: tuple[str, list[Any]] = (
        "DELETE FROM audit_auditevent WHERE id = %s",
        [event.id],
    )
    name_the_cut: tuple[str, list[Any]] = (
        "SELECT set_config('kimberly.audit_prune', %s, true)",
        [f"{alice.pk}:{event.seq}"],
    )
    update: tuple[str, list[Any]] = (
        "UPDATE audit_auditevent SET action = 'x' WHERE id = %s",
        [event.id],
    )
    # plain; naming a cut with no anchor behind it; and never an UPDATE
    for statements in ([delete], [name_the_cut, delete], [name_the_cut, update]):
        with (
            pytest.raises(DatabaseError),
            transaction.atomic(),
            connection.cursor() as cur,
        ):
            for sql, params in statements:
                cur.execute(sql, params)
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def _forge_cut(event: AuditEvent, cut_before: Any) -> None:
    """What SQL as the app role could try: an anchor and a DELETE, no prune event."""
    AuditAnchor.objects.create(
        user_id=event.user_id,
        through_seq=event.seq,
        through_hash=event.hash,
        pruned=1,
        cut_before=cut_before,
    )
    with connection.cursor() as cur:
        cur.execute(
            "SELECT set_config('kimberly.audit_prune', %s, true)",
            [f"{event.user_id}:{event.seq}"],
        )
        cur.execute("DELETE FROM audit_auditevent WHERE id = %s", [event.id])


def test_recent_history_cannot_be_cut_even_with_a_forged_anchor(alice):
    memory_for(alice, "a fact")
    first = AuditEvent.objects.filter(user_id=alice.pk).order_by("seq").first()
    assert first is not None
    for cut_before in (timezone.now(), timezone.now() - timedelta(days=2)):
        with pytest.raises(DatabaseError), transaction.atomic():
            _forge_cut(first, cut_before)  # too recent a cut; an event after it
    assert AuditEvent.objects.filter(pk=first.pk).exists()


def test_an_anchor_no_prune_event_confirms_does_not_verify(alice):
    with _long_ago(10):
        memory_for(alice, "a fact")
    memory_for(alice, "another fact")
    first = AuditEvent.objects.filter(user_id=alice.pk).order_by("seq").first()
    assert first is not None
    _forge_cut(first, timezone.now() - timedelta(days=5))
    report = audit_verify(user_id=alice.pk)
    assert report.first_break is not None
    assert "not confirmed" in report.first_break.reason
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditAnchor.objects.filter(user_id=alice.pk).delete()


def test_records_before_counts_what_a_window_leaves(alice):
    memory_for(alice, "a passing thought", tier="short-term")
    future = timezone.now() + timedelta(days=1)
    assert records_before("short_term_memories", future, alice.pk) == 1
    assert records_before("short_term_memories", timezone.now() - timedelta(1)) == 0


def test_the_cli_shows_and_enforces(alice, capsys):
    call_command("compliance", "retention")
    assert "chat_messages" in capsys.readouterr().out
    call_command("compliance", "retention", "--enforce", "--type", "exports")
    assert '"exports": 0' in capsys.readouterr().out
    assert RetentionRun.objects.filter(data_type="exports").count() == 1


def test_one_pass_at_a_time(alice):
    from django.db import connections

    lock = "SELECT pg_advisory_{}(hashtextextended('privacy:retention', 0))"
    other = connections.create_connection("default")
    try:
        with other.cursor() as cur:
            cur.execute(lock.format("lock"))
        assert retention_enforce() == {}, "another pass holds the lock"
        with other.cursor() as cur:  # (not by closing: the server frees it later)
            cur.execute(lock.format("unlock"))
    finally:
        other.close()
    assert set(retention_enforce()) == set(DataType.values)


def test_a_failing_data_type_is_recorded_and_the_others_still_run(alice, monkeypatch):
    from privacy.retention import enforce

    def broken(**kwargs: Any) -> int:
        raise RuntimeError("object storage is down")

    kind = enforce.KINDS["exports"]
    monkeypatch.setitem(
        enforce.KINDS,
        "exports",
        enforce.Kind(broken, kind.rows, kind.time_field, kind.user_field),
    )
    done = retention_enforce()
    assert set(done) == set(DataType.values)
    failed = RetentionRun.objects.get(data_type="exports")
    assert "object storage is down" in failed.error
    assert "exports" not in enforce.last_runs() and "telemetry" in enforce.last_runs()


def test_an_exports_zip_goes_with_its_record(alice, django_capture_on_commit_callbacks):
    from kimberly import storage

    key = storage.user_key(alice.pk, "exports", "old.zip")
    storage.put_bytes(key, b"zip", "application/zip")
    export = DataExport.objects.create(user=alice, status="expired", object_key=key)
    DataExport.objects.filter(pk=export.pk).update(
        created_at=timezone.now() - timedelta(days=60)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert retention_enforce(data_types=["exports"]) == {"exports": 1}
    assert storage.count_prefix(storage.user_prefix(alice.pk)) == 0


def test_telemetry_score_records_follow_each_users_window(alice, bob, alice_api):
    from memory import meditation
    from memory.models import MeditationRun, ScoreRecord

    for user in (alice, bob):
        memory_for(user, "one fact")
        run = meditation.meditation_run(ctx=ctx_for(user), user=user, dry_run=True)
        MeditationRun.objects.filter(pk=run.pk).update(
            started_at=timezone.now() - timedelta(days=5)
        )
    _put(alice_api, {"telemetry": 3})
    assert retention_enforce(data_types=["telemetry"]) == {"telemetry": 1}
    assert not ScoreRecord.objects.filter(run__user=alice).exists()
    assert ScoreRecord.objects.filter(run__user=bob).count() == 1
