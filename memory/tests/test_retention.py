# mypy: disable-error-code="operator"
"""Meditation retention: promote, expire, archive over quota, purge, cap, dry run."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import cast

import pytest
from django.db.models import Sum
from django.test import override_settings
from django.utils import timezone

from audit.models import AuditEvent
from kimberly import rls
from kimberly.context import Actor, Context
from memory import meditation, services
from memory.meditation import runs
from memory.metadata import MetadataPatch
from memory.models import MemoryItem, MemoryVersion, Quota

pytestmark = pytest.mark.django_db

SMALL = {"short-term": 2_000, "long-term": 3_000, "permanent": 40_000}


def _ctx(user) -> Context:
    return Context(Actor("user", str(user.pk)))


def _store(user, content: str, tier: str = "long-term", age_hours: float = 0, **meta):
    item = services.memory_create(
        ctx=_ctx(user),
        user=user,
        tier=tier,
        content=content,
        metadata=cast(MetadataPatch, meta) or None,
        created_at=timezone.now() - timedelta(hours=age_hours),
    ).item
    return item


def _run(user, **kw):
    return meditation.meditation_run(
        ctx=Context(Actor.system("meditation")), user=user, **kw
    )


def _decisions(run) -> dict:
    return {r.item_id: (r.decision, r.reason) for r in run.scores.all()}


def _usage_is_exact(user) -> None:
    for q in Quota.objects.filter(user=user):
        stored = (
            MemoryItem.objects.filter(
                user=user, tier=q.tier, status="active"
            ).aggregate(s=Sum("size_bytes"))["s"]
            or 0
        )
        assert q.used_bytes == stored, q.tier


def test_old_short_term_items_are_promoted_when_saved_or_valued_else_expire(alice):
    liked = _store(
        alice,
        "I love this plan",
        tier="short-term",
        age_hours=30,
        user_feedback="thumbs_up",
    )
    saved = _store(alice, "keep this", tier="short-term", age_hours=30)
    services.memory_lifecycle(
        ctx=_ctx(alice), user=alice, memory_id=saved.public_id, action="protect"
    )
    stale = _store(alice, "temporary note", tier="short-term", age_hours=30)
    fresh = _store(alice, "just now", tier="short-term", age_hours=1)
    run = _run(alice)
    d = _decisions(run)
    assert d[liked.id][0] == "promote" and "thumbs_up" in d[liked.id][1]
    assert d[saved.id][0] == "promote" and "protected" in d[saved.id][1]
    assert d[stale.id][0] == "expire" and "< 0.6" in d[stale.id][1]
    assert d[fresh.id][0] == "keep"
    assert (run.promoted, run.expired) == (2, 1)
    liked.refresh_from_db(), stale.refresh_from_db(), fresh.refresh_from_db()
    assert liked.tier == "long-term" and liked.status == "active"
    assert stale.status == "archived" and stale.tier == "short-term"
    assert fresh.tier == "short-term" and fresh.status == "active"
    _usage_is_exact(alice)


@override_settings(MEMORY_QUOTA_DEFAULTS=SMALL)
def test_a_tier_over_quota_archives_lowest_scores_first_never_protected(alice):
    loved = _store(alice, "a" * 700, user_feedback="rating:5")
    protected = _store(alice, "b" * 700, user_feedback="thumbs_down")
    services.memory_lifecycle(
        ctx=_ctx(alice), user=alice, memory_id=protected.public_id, action="protect"
    )
    low = _store(alice, "c" * 700, user_feedback="thumbs_down")
    mid = _store(alice, "d" * 700)
    assert (
        Quota.objects.get(user=alice, tier="long-term").used_bytes > SMALL["long-term"]
    )
    run = _run(alice)
    d = _decisions(run)
    assert d[low.id][0] == "archive" and "over its quota" in d[low.id][1]
    assert d[protected.id][0] == "keep", "protected items are never archived"
    assert d[loved.id][0] == "keep" and d[mid.id][0] == "keep"
    assert (
        Quota.objects.get(user=alice, tier="long-term").used_bytes <= SMALL["long-term"]
    )
    _usage_is_exact(alice)
    assert AuditEvent.objects.filter(
        user_id=alice.pk, action="memory.archive", target_id=low.public_id
    ).exists()
    assert MemoryVersion.objects.filter(item=low, action="meditation.archive").exists()


def test_archives_past_the_grace_window_are_purged_with_a_tombstone(alice):
    old = _store(alice, "forget me")
    recent = _store(alice, "archived yesterday")
    for item in (old, recent):
        services.memory_lifecycle(
            ctx=_ctx(alice), user=alice, memory_id=item.public_id, action="archive"
        )
    MemoryItem.objects.filter(pk=old.pk).update(
        archived_at=timezone.now() - timedelta(days=31)
    )
    run = _run(alice)
    assert run.purged == 1
    assert not MemoryItem.objects.filter(pk=old.pk).exists()
    assert MemoryItem.objects.filter(pk=recent.pk, status="archived").exists()
    tomb = AuditEvent.objects.get(user_id=alice.pk, action="memory.purge")
    assert tomb.target_id == old.public_id
    assert "forget me" not in str(tomb.details)


@override_settings(MEDITATION_MAX_CHANGES=2)
def test_the_per_run_cap_defers_the_rest_to_the_next_run(alice):
    items = [
        _store(alice, f"note {n}", tier="short-term", age_hours=48) for n in range(5)
    ]
    run = _run(alice)
    assert run.expired + run.promoted == 2
    assert run.deferred == 3
    assert (
        MemoryItem.objects.filter(
            pk__in=[i.pk for i in items], status="archived"
        ).count()
        == 2
    )
    nxt = _run(alice)
    assert nxt.expired == 2


@override_settings(MEMORY_QUOTA_DEFAULTS=SMALL)
def test_a_dry_run_changes_nothing_and_forecasts_exactly_what_the_real_run_does(
    alice, alice_api
):
    for n in range(4):
        _store(alice, f"{n}" * 700)
    _store(alice, "old session", tier="short-term", age_hours=40)
    before = list(
        MemoryItem.objects.filter(user=alice).values_list(
            "id", "status", "tier", "score"
        )
    )
    forecast = alice_api.get("/v1/memory/forecast").json()
    assert forecast["archived"] >= 1 and forecast["expired"] == 1
    assert (
        list(
            MemoryItem.objects.filter(user=alice).values_list(
                "id", "status", "tier", "score"
            )
        )
        == before
    )
    as_of = timezone.now()
    dry = _run(alice, dry_run=True, as_of=as_of)
    real = _run(alice, as_of=as_of)
    assert _decisions(dry) == _decisions(real)
    assert {d["memory_id"] for d in forecast["decisions"]["items"]} == {
        f"mem_{i}" for i, (dec, _) in _decisions(real).items() if dec != "keep"
    }


@override_settings(MEMORY_QUOTA_DEFAULTS=SMALL)
def test_restoring_an_archived_item_is_quota_checked(alice_api, alice):
    for n in range(4):
        _store(alice, f"{n}" * 700)
    run = _run(alice)
    archived = run.scores.filter(decision="archive").first()
    resp = alice_api.post(f"/v1/memory/mem_{archived.item_id}/restore")
    assert resp.status_code in (200, 429)
    _usage_is_exact(alice)
    if resp.status_code == 429:
        assert resp.json()["error"] == "quota_exceeded"


@pytest.mark.django_db(transaction=True)
def test_two_runs_for_one_user_at_once_are_serialized(alice):
    import threading

    from django.db import connection

    _store(alice, "x", tier="short-term", age_hours=30)
    results = []

    def go():
        try:
            with rls.acting_user(alice.pk):  # as meditate_user would
                results.append(_run(alice).expired)
        finally:
            connection.close()

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0, 1], (
        "the second run waited and found nothing left to do"
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_worker_killed_mid_run_leaves_a_run_that_restarts_without_doing_anything_twice(
    alice,
):
    """Kill -9 a real Celery worker process while it is inside a meditation run."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    import psycopg
    from django.conf import settings
    from django.db import connection

    from kimberly.celery import app as celery_app
    from memory.models import MeditationRun
    from memory.tasks import meditate_user

    item = _store(alice, "old session note", tier="short-term", age_hours=30)
    celery_app.control.purge()
    db = connection.settings_dict
    auth = f"{db['USER']}:{db['PASSWORD']}" if db.get("PASSWORD") else db["USER"]
    url = f"postgresql://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    # Hold the user's meditation lock so the worker's run blocks inside its transaction.
    holder = psycopg.connect(url, autocommit=True)
    holder.execute(
        "SELECT pg_advisory_lock(hashtextextended(%s, 0))", [f"meditate:{alice.pk}"]
    )
    run = meditation.meditation_queue(user=alice)  # autocommit: published at once
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "kimberly.settings.test",
        "DATABASE_URL": url,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "EMBEDDING_WARMUP": "0",
    }
    worker = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "celery"),
            "-A",
            "kimberly.celery",
            "worker",
            *("-Q", settings.MEDITATION_QUEUE),
            "--pool",
            "solo",
            "--without-mingle",
            "--without-gossip",
            "--loglevel",
            "WARNING",
        ],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        waiting = False
        for _ in range(300):  # up to 60 s for the worker to start and block
            row = holder.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE %s",
                ["%pg_advisory_xact_lock%"],
            ).fetchone()
            waiting = bool(row and row[0])
            if waiting:
                break
            time.sleep(0.2)
        assert waiting, "the worker never reached the run"
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
        holder.execute("SELECT pg_advisory_unlock_all()")
        holder.close()
    run.refresh_from_db()
    item.refresh_from_db()
    assert run.status == "queued" and run.scores.count() == 0
    assert item.status == "active", "the killed run changed nothing"
    # What the broker's redelivery does (acks_late): run the task again.
    assert meditate_user(run.pk) == 1
    run.refresh_from_db()
    item.refresh_from_db()
    assert (run.status, run.expired, item.status) == ("done", 1, "archived")
    assert meditate_user(run.pk) == 0, "a finished run is never applied twice"
    assert MeditationRun.objects.get(pk=run.pk).expired == 1
    celery_app.control.purge()


@override_settings(MEMORY_QUOTA_DEFAULTS=SMALL)
def test_meditation_metrics_count_applied_decisions_time_and_failures(
    alice, monkeypatch
):
    from prometheus_client import REGISTRY

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    for c in "abcd":  # over the 3,000-byte long-term quota
        _store(alice, c * 700, user_feedback="thumbs_down")
    before = {
        "archive": sample("kimberly_meditation_items_total", decision="archive"),
        "runs": sample("kimberly_meditation_seconds_count"),
        "failures": sample("kimberly_meditation_failures_total"),
    }
    _run(alice, dry_run=True)
    assert (
        sample("kimberly_meditation_items_total", decision="archive")
        == before["archive"]
    ), "a dry run applies nothing, so counts nothing"
    started = time.time()
    run = _run(alice)
    assert run.archived >= 1
    assert (
        sample("kimberly_meditation_items_total", decision="archive")
        == before["archive"] + run.archived
    )
    assert sample("kimberly_meditation_seconds_count") == before["runs"] + 2
    assert sample("kimberly_meditation_last_success_timestamp") >= int(started)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(runs, "_audit_runs", broken)
    with pytest.raises(RuntimeError):
        _run(alice)
    assert sample("kimberly_meditation_failures_total") == before["failures"] + 1


# ---------------------------------------------- a user acts between decide and apply


def _between_decide_and_apply(monkeypatch, user, action) -> None:
    """Run `action` as the user would, from another connection, after the run has
    decided and before it takes its apply locks (the window of issue 9)."""
    import threading

    from django.db import connection

    real = runs._lock_for_apply
    errors: list[BaseException] = []

    def user_acts() -> None:
        try:
            with rls.acting_user(user.pk):  # as the user's request would
                action()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    def lock_after_the_user(cur, params):
        thread = threading.Thread(target=user_acts)
        thread.start()
        thread.join(30)
        assert not thread.is_alive() and not errors, errors
        return real(cur, params)

    monkeypatch.setattr(runs, "_lock_for_apply", lock_after_the_user)


def _lifecycle(user, item, action: str):
    return lambda: services.memory_lifecycle(
        ctx=_ctx(user), user=user, memory_id=item.public_id, action=action
    )


def _left_alone(run, item, decision: str) -> None:
    """The run did not apply `decision` to `item`, says why, audits nothing."""
    record = run.scores.get(item_id=item.id)
    assert (record.decision, record.reason) == (
        "keep",
        f"changed during the run: {decision} not applied",
    )
    assert not AuditEvent.objects.filter(action=f"memory.{decision}").exists()


@pytest.mark.django_db(transaction=True)
def test_protecting_an_item_while_a_run_decides_keeps_it_editable_and_the_run_honest(
    alice, monkeypatch
):
    item = _store(alice, "temporary note", tier="short-term", age_hours=30)
    _between_decide_and_apply(monkeypatch, alice, _lifecycle(alice, item, "protect"))
    run = _run(alice)
    monkeypatch.undo()
    item.refresh_from_db()
    assert (item.status, item.protected) == ("active", True)
    assert run.expired == 0
    _left_alone(run, item, "expire")
    # Every later edit and the next night still work (no duplicate version row).
    services.memory_update(
        ctx=_ctx(alice), user=alice, memory_id=item.public_id, content="still mine"
    )
    nxt = _run(alice)
    assert (nxt.status, nxt.promoted) == ("done", 1)
    assert sorted(MemoryVersion.objects.filter(item=item).values_list("version")) == [
        (1,),
        (2,),
        (3,),
    ]


@pytest.mark.django_db(transaction=True)
def test_restoring_an_archive_while_a_run_decides_to_purge_it_keeps_history_and_vector(
    alice, monkeypatch
):
    from memory.models import MemoryEmbedding

    item = _store(alice, "forget me not")
    _lifecycle(alice, item, "archive")()
    MemoryItem.objects.filter(pk=item.pk).update(
        archived_at=timezone.now() - timedelta(days=31)
    )
    MemoryEmbedding.objects.create(
        item=item, user=alice, vector=[0.1] * 384, model="test", content_hash="x"
    )
    _between_decide_and_apply(monkeypatch, alice, _lifecycle(alice, item, "restore"))
    run = _run(alice)
    item.refresh_from_db()
    assert item.status == "active"
    assert run.purged == 0
    _left_alone(run, item, "purge")
    assert MemoryVersion.objects.filter(item=item).count() == 2, "history kept"
    assert MemoryEmbedding.objects.filter(item=item).exists(), "vector kept"


@pytest.mark.django_db(transaction=True)
def test_moving_an_item_to_permanent_while_a_run_decides_to_promote_it_wins(
    alice, monkeypatch
):
    item = _store(
        alice, "I love this", tier="short-term", age_hours=30, user_feedback="thumbs_up"
    )
    _between_decide_and_apply(
        monkeypatch,
        alice,
        lambda: services.memory_update(
            ctx=_ctx(alice), user=alice, memory_id=item.public_id, tier="permanent"
        ),
    )
    run = _run(alice)
    item.refresh_from_db()
    assert item.tier == "permanent"
    assert run.promoted == 0
    _left_alone(run, item, "promote")
    _usage_is_exact(alice)


def test_meditation_metrics_are_per_run_not_per_batch_or_attempt(
    alice, bob, monkeypatch
):
    from prometheus_client import REGISTRY

    from memory.tasks import meditate_batch

    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(name) or 0.0

    _store(alice, "alice remembers")
    _store(bob, "bob remembers")
    before = {
        "runs": sample("kimberly_meditation_seconds_count"),
        "nights": sample("kimberly_meditation_all_seconds_count"),
        "failures": sample("kimberly_meditation_failures_total"),
    }
    night = meditation.meditation_queue_all()
    meditate_batch(list(night.children.values_list("pk", flat=True)))
    assert sample("kimberly_meditation_seconds_count") == before["runs"] + 2
    assert sample("kimberly_meditation_all_seconds_count") == before["nights"] + 1
    meditation.meditation_all_refresh(night.pk)
    assert sample("kimberly_meditation_all_seconds_count") == before["nights"] + 1, (
        "a refresh of a finished night observes nothing more"
    )

    real = runs._audit_runs

    def alice_breaks(ctx, runs):
        if any(r.user_id == alice.pk for r in runs):
            raise RuntimeError("disk full")
        return real(ctx, runs)

    monkeypatch.setattr(runs, "_audit_runs", alice_breaks)
    night = meditation.meditation_queue_all()
    meditate_batch(list(night.children.values_list("pk", flat=True)))
    assert night.children.get(user=alice).status == "failed"
    assert sample("kimberly_meditation_failures_total") == before["failures"] + 1, (
        "one failed run, however many attempts"
    )
    assert sample("kimberly_meditation_seconds_count") == before["runs"] + 3


def test_a_soft_time_limit_stops_the_batch_at_once_and_leaves_its_runs_queued(
    alice, bob, monkeypatch
):
    from celery.exceptions import SoftTimeLimitExceeded

    from memory.tasks import meditate_batch

    _store(alice, "x", tier="short-term", age_hours=30)
    _store(bob, "y", tier="short-term", age_hours=30)
    night = meditation.meditation_queue_all()
    attempts: list[object] = []

    def out_of_time(cur, params):
        attempts.append(params["users"])
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(runs, "_lock_for_apply", out_of_time)
    with pytest.raises(SoftTimeLimitExceeded):
        meditate_batch(list(night.children.values_list("pk", flat=True)))
    assert len(attempts) == 1, "no user is tried again after the limit"
    assert set(night.children.values_list("status", flat=True)) == {"queued"}
    assert MemoryItem.objects.filter(status="archived").count() == 0


@pytest.mark.django_db(transaction=True)
@override_settings(MEMORY_QUOTA_DEFAULTS=SMALL)
def test_deleting_memories_while_a_run_decides_to_archive_for_quota_archives_nothing(
    alice, monkeypatch
):
    low = _store(alice, "c" * 700, user_feedback="thumbs_down")
    big = [_store(alice, f"{n}" * 700) for n in range(3)]
    assert Quota.objects.get(user=alice, tier="long-term").used_bytes > 3_000

    def delete_two() -> None:
        for item in big[:2]:
            services.memory_delete(
                ctx=_ctx(alice), user=alice, memory_id=item.public_id
            )

    _between_decide_and_apply(monkeypatch, alice, delete_two)
    run = _run(alice)
    monkeypatch.undo()
    low.refresh_from_db()
    assert (low.status, run.archived) == ("active", 0)
    record = run.scores.get(item_id=low.id)
    assert (record.decision, record.reason) == (
        "keep",
        "memories changed during the run: archive not applied",
    )
    assert Quota.objects.get(user=alice, tier="long-term").used_bytes <= 3_000
    _usage_is_exact(alice)
