# mypy: disable-error-code="operator"
"""Meditation scoring v1: deterministic, versioned, set-wise; goals; weights."""

from __future__ import annotations

import math
from datetime import timedelta
from io import StringIO
from typing import cast

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from kimberly.context import Actor, Context
from memory import indexing, meditation, retrieval, services
from memory.meditation import runs
from memory.metadata import MetadataPatch
from memory.models import MeditationRun, MemoryItem, RetrievalRecord, ScoreRecord
from users.preferences import DEFAULT_WEIGHTS, normalize_weights

pytestmark = pytest.mark.django_db


def _ctx(user) -> Context:
    return Context(Actor("user", str(user.pk)))


def _store(user, content: str, **metadata) -> MemoryItem:
    return services.memory_create(
        ctx=_ctx(user),
        user=user,
        tier="long-term",
        content=content,
        metadata=cast(MetadataPatch, metadata) or None,
    ).item


def _old_session(user, n: int) -> None:
    """A short-term memory past its 24 h lifetime: the next run expires it."""
    services.memory_create(
        ctx=_ctx(user),
        user=user,
        tier="short-term",
        content=f"old session {n}",
        created_at=timezone.now() - timedelta(hours=40),
    )


def _scores(run: MeditationRun) -> dict:
    return {
        r.item_id: (
            r.relevance_to_goals,
            r.emotional_weight,
            r.predictive_value,
            r.recency_freq,
            r.score,
        )
        for r in run.scores.all()
    }


def test_same_inputs_give_the_same_scores(alice):
    for text in (
        "I love my garden",
        "Quarterly report due",
        "Awful day at the dentist",
    ):
        _store(alice, text)
    as_of = timezone.now()
    first = meditation.meditation_run(
        ctx=_ctx(alice), user=alice, dry_run=True, as_of=as_of
    )
    second = meditation.meditation_run(
        ctx=_ctx(alice), user=alice, dry_run=True, as_of=as_of
    )
    assert first.processed == second.processed == 3
    assert _scores(first) == _scores(second)
    assert first.scoring_version == "v1"
    assert first.weights == DEFAULT_WEIGHTS


def test_a_dry_run_records_scores_but_changes_no_memory(alice):
    item = _store(alice, "I love my garden", user_feedback="thumbs_up")
    run = meditation.meditation_run(ctx=_ctx(alice), user=alice, dry_run=True)
    assert run.status == "done"
    assert run.scores.get().score > 0
    item.refresh_from_db()
    assert item.score == 0.0


def test_a_real_run_sets_scores_that_follow_the_signals(alice):
    liked = _store(alice, "I love hiking with my sister", user_feedback="thumbs_up")
    disliked = _store(alice, "boring tax form", user_feedback="thumbs_down")
    plain = _store(alice, "boring tax form number two")
    run = meditation.meditation_run(ctx=_ctx(alice), user=alice)
    for item in (liked, disliked, plain):
        item.refresh_from_db()
    assert liked.score > plain.score > disliked.score
    record = run.scores.get(item_id=liked.id)
    assert record.emotional_weight > 0.6
    assert record.previous_score == 0.0
    assert 0 <= record.score <= 1


def test_goals_raise_the_relevance_of_matching_memories(alice, alice_api):
    garden = _store(
        alice, "Planted tomatoes and basil in the raised bed", tags=["garden"]
    )
    other = _store(alice, "Renewed the car insurance")
    indexing.memory_embed_items([garden.id, other.id])
    resp = alice_api.post(
        "/v1/goals",
        {"text": "Grow my own vegetables", "tags": ["garden"]},
        format="json",
    )
    assert resp.status_code == 201
    assert resp.json()["embedded"] is True
    run = meditation.meditation_run(ctx=_ctx(alice), user=alice, dry_run=True)
    rel = {r.item_id: r.relevance_to_goals for r in run.scores.all()}
    assert rel[garden.id] >= 0.8 > rel[other.id]


def test_without_goals_relevance_is_neutral(alice):
    item = _store(alice, "anything")
    run = meditation.meditation_run(ctx=_ctx(alice), user=alice, dry_run=True)
    assert run.scores.get(item_id=item.id).relevance_to_goals == 0.5


def test_retrievals_raise_predictive_value_and_recency(alice, alice_api):
    used = _store(alice, "green tea in the morning")
    unused = _store(alice, "a note nobody asks about")
    for _ in range(3):
        alice_api.post("/v1/memory/query", {"query": "green tea"}, format="json")
    retrieval.flush_retrieval_log()
    run = meditation.meditation_run(ctx=_ctx(alice), user=alice, dry_run=True)
    scores = {r.item_id: r for r in run.scores.all()}
    assert scores[used.id].predictive_value > scores[unused.id].predictive_value
    later = meditation.meditation_run(
        ctx=_ctx(alice),
        user=alice,
        dry_run=True,
        as_of=timezone.now() + timedelta(days=90),
    )
    assert (
        later.scores.get(item_id=unused.id).recency_freq
        < scores[unused.id].recency_freq
    )


def _retrieved(item: MemoryItem, times: int, days_ago: float) -> None:
    at = timezone.now() - timedelta(days=days_ago)
    RetrievalRecord.objects.bulk_create(
        RetrievalRecord(
            user_id=item.user_id, item_id=item.id, rank=1, final=0.5, created_at=at
        )
        for _ in range(times)
    )


@override_settings(RETRIEVAL_RECORDS_DAYS=30)
def test_predictive_value_counts_only_the_retrievals_of_the_window(alice):
    long_ago = _store(alice, "asked about a lot last spring")
    lately = _store(alice, "asked about a lot this week")
    _retrieved(long_ago, 10, days_ago=45)
    _retrieved(lately, 10, days_ago=2)
    run = meditation.meditation_run(ctx=_ctx(alice), user=alice, dry_run=True)
    pred = {r.item_id: r.predictive_value for r in run.scores.all()}
    assert pred[long_ago.id] == 0.0
    assert pred[lately.id] == round(1 - math.exp(-10 / 5), 6)
    earlier = meditation.meditation_run(
        ctx=_ctx(alice),
        user=alice,
        dry_run=True,
        as_of=timezone.now() - timedelta(days=20),
    )
    pred = {r.item_id: r.predictive_value for r in earlier.scores.all()}
    assert pred[long_ago.id] > 0, "45 days ago is inside the window of 20 days ago"
    assert pred[lately.id] == 0.0, "retrievals after as_of do not count"


def test_archived_and_other_users_memories_are_not_scored(alice, bob):
    mine = _store(alice, "mine")
    archived = _store(alice, "old")
    services.memory_lifecycle(
        ctx=_ctx(alice), user=alice, memory_id=archived.public_id, action="archive"
    )
    _store(bob, "bob's")
    run = meditation.meditation_run(ctx=_ctx(alice), user=alice, dry_run=True)
    assert set(run.scores.values_list("item_id", flat=True)) == {mine.id}


def test_user_weights_are_validated_and_normalized(alice_api, alice):
    resp = alice_api.put(
        "/v1/user",
        {
            "meditation_weights": {
                "relevance_to_goals": 1,
                "emotional_weight": 1,
                "predictive_value": 1,
                "recency_freq": 1,
            }
        },
        format="json",
    )
    assert resp.status_code == 200
    assert resp.json()["meditation_weights"]["recency_freq"] == 0.25
    for bad in (
        {
            "relevance_to_goals": 2,
            "emotional_weight": 0,
            "predictive_value": 0,
            "recency_freq": 0,
        },
        {
            "relevance_to_goals": 0,
            "emotional_weight": 0,
            "predictive_value": 0,
            "recency_freq": 0,
        },
        {"relevance_to_goals": 0.5},
        "heavy",
    ):
        r = alice_api.put("/v1/user", {"meditation_weights": bad}, format="json")
        assert r.status_code == 400, bad
    alice.refresh_from_db()
    assert alice.meditation_weights["recency_freq"] == 0.25
    run = meditation.meditation_run(ctx=_ctx(alice), user=alice, dry_run=True)
    assert run.weights["relevance_to_goals"] == 0.25


def test_meditate_api_queues_a_run_that_a_worker_completes(
    alice_api, alice, django_capture_on_commit_callbacks
):
    from memory.tasks import meditate_user

    _store(alice, "something to score")
    with django_capture_on_commit_callbacks() as callbacks:
        resp = alice_api.post("/v1/memory/meditate", {"dry_run": True}, format="json")
    assert resp.status_code == 202
    run_id = resp.json()["run_id"]
    assert resp.json()["status"] == "queued"
    assert len(callbacks) == 1
    assert meditate_user(run_id) == 1
    assert meditate_user(run_id) == 0, "a finished run is not run twice"
    detail = alice_api.get(f"/v1/memory/meditations/{run_id}").json()
    assert detail["status"] == "done"
    assert detail["processed"] == 1
    assert detail["scores"]["items"][0]["memory_id"].startswith("mem_")
    listing = alice_api.get("/v1/memory/meditations").json()
    assert [r["run_id"] for r in listing["items"]] == [run_id]


def test_bob_sees_none_of_alices_runs_or_goals(alice_api, bob_api):
    run_id = alice_api.post("/v1/memory/meditate", {}, format="json").json()["run_id"]
    goal_id = alice_api.post(
        "/v1/goals", {"text": "Run a marathon"}, format="json"
    ).json()["id"]
    assert bob_api.get(f"/v1/memory/meditations/{run_id}").status_code == 404
    assert bob_api.get("/v1/memory/meditations").json()["items"] == []
    assert bob_api.get("/v1/goals").json()["items"] == []
    assert bob_api.delete(f"/v1/goals/{goal_id}").status_code == 404
    assert alice_api.delete(f"/v1/goals/{goal_id}").status_code == 204


@pytest.mark.parametrize(
    "body",
    [{"text": ""}, {"text": "x" * 1001}, {"text": "ok", "tags": "nope"}, {"colour": 1}],
)
def test_bad_goals_are_400(alice_api, body):
    assert alice_api.post("/v1/goals", body, format="json").status_code == 400


def test_cli_meditate_prints_a_summary(alice):
    _store(alice, "one")
    out = StringIO()
    call_command("meditate", "--user", "alice@example.com", "--dry-run", stdout=out)
    assert "1 memories scored" in out.getvalue()
    assert "dry run" in out.getvalue()
    assert ScoreRecord.objects.count() == 1


def test_the_nightly_run_fans_out_in_user_batches_and_sums_its_children(
    alice, bob, settings, django_capture_on_commit_callbacks
):
    from memory.tasks import meditate_all, meditate_batch

    settings.MEDITATION_BATCH_USERS = 1
    _store(alice, "alice remembers")
    _store(alice, "alice again")
    _store(bob, "bob remembers")
    with django_capture_on_commit_callbacks() as callbacks:
        parent_id = meditate_all()
    parent = MeditationRun.objects.get(pk=parent_id)
    assert parent.scope == "all" and parent.user is None
    assert parent.status == "queued"
    children = list(parent.children.order_by("pk"))
    assert {c.user_id for c in children} == {alice.pk, bob.pk}
    assert len(callbacks) == 2, "one task per batch of one user"
    first = children[0]
    assert (
        meditate_batch([first.pk]) == MemoryItem.objects.filter(user=first.user).count()
    )
    parent.refresh_from_db()
    assert parent.status == "queued", "still waiting for the other batch"
    assert meditate_batch([c.pk for c in children]) > 0, "only what is left runs"
    assert meditate_batch([c.pk for c in children]) == 0, (
        "a redelivered batch is a no-op"
    )
    parent.refresh_from_db()
    assert parent.status == "done"
    assert parent.processed == 3
    assert parent.finished_at is not None and parent.duration_ms is not None


def test_a_failing_user_fails_the_night_but_not_the_other_users(
    alice, bob, monkeypatch
):
    from memory.tasks import meditate_batch

    _store(alice, "alice remembers")
    _store(bob, "bob remembers")
    real = runs._audit_runs

    def flaky(ctx, runs):  # fails every transaction that holds alice's run
        if any(r.user_id == alice.pk for r in runs):
            raise RuntimeError("boom")
        return real(ctx, runs)

    parent = meditation.meditation_queue_all()
    monkeypatch.setattr(runs, "_audit_runs", flaky)
    meditate_batch(list(parent.children.values_list("pk", flat=True)))
    parent.refresh_from_db()
    assert parent.status == "failed"
    assert parent.error == "1 of 2 user runs failed"
    assert parent.processed == 1
    assert parent.children.get(user=bob).status == "done"


def test_empty_night_finishes_at_once(db):
    parent = meditation.meditation_queue_all()
    parent.refresh_from_db()
    assert parent.status == "done" and parent.processed == 0


def test_old_score_records_are_pruned_but_runs_stay(alice, settings):
    _store(alice, "one")
    run = meditation.meditation_run(ctx=_ctx(alice), user=alice, dry_run=True)
    MeditationRun.objects.filter(pk=run.pk).update(
        started_at=timezone.now() - timedelta(days=settings.MEDITATION_RECORDS_DAYS + 1)
    )
    fresh = meditation.meditation_run(ctx=_ctx(alice), user=alice, dry_run=True)
    cutoff = timezone.now() - timedelta(days=settings.MEDITATION_RECORDS_DAYS)
    assert meditation.meditation_prune_records(cutoff=cutoff) == 1
    assert not ScoreRecord.objects.filter(run=run).exists()
    assert ScoreRecord.objects.filter(run=fresh).count() == 1
    assert MeditationRun.objects.filter(pk=run.pk).exists()


def test_cli_meditate_without_a_user_runs_everyone(alice, bob):
    _store(alice, "one")
    _store(bob, "two")
    out = StringIO()
    call_command("meditate", stdout=out)
    assert "all users: run" in out.getvalue()
    assert "2 users, 2 memories scored" in out.getvalue()
    parent = MeditationRun.objects.get(scope="all")
    assert parent.status == "done" and parent.processed == 2


def test_a_batch_of_users_scores_and_decides_exactly_as_single_runs(
    alice, bob, settings
):
    from audit.selectors import audit_verify
    from memory.models import Goal, Quota

    for text in ("I love my garden", "Quarterly report due", "Awful dentist day"):
        _store(alice, text)
        _store(bob, text + " again", user_feedback="rating:4")
    Goal.objects.create(user=alice, text="garden", tags=["home"])
    bob.meditation_weights = normalize_weights(
        {
            "relevance_to_goals": 0,
            "emotional_weight": 1,
            "predictive_value": 0,
            "recency_freq": 1,
        }
    )
    bob.save()
    Quota.objects.filter(user=bob, tier="long-term").update(limit_bytes=1)
    as_of = timezone.now()
    singles = {
        u.pk: meditation.meditation_run(ctx=_ctx(u), user=u, dry_run=True, as_of=as_of)
        for u in (alice, bob)
    }
    batch = [
        MeditationRun.objects.create(
            user=u,
            dry_run=True,
            scoring_version="v1",
            weights=meditation.weights_for(u),
            as_of=as_of,
        )
        for u in (alice, bob)
    ]
    meditation.meditation_run_many(ctx=_ctx(alice), runs=batch)
    for run in batch:
        run.refresh_from_db()
        single = singles[run.user_id]
        assert run.status == "done"
        assert _scores(run) == _scores(single)
        assert set(run.scores.values_list("item_id", "decision", "reason")) == set(
            single.scores.values_list("item_id", "decision", "reason")
        )
        assert (run.processed, run.archived) == (single.processed, single.archived)
    assert batch[1].archived == 3 and batch[0].archived == 0, "only bob is over"
    assert _scores(batch[0]) != _scores(batch[1]), "each run used its own inputs"
    real = [
        MeditationRun.objects.create(
            user=u, scoring_version="v1", weights=meditation.weights_for(u), as_of=as_of
        )
        for u in (alice, bob)
    ]
    meditation.meditation_run_many(ctx=_ctx(alice), runs=real)
    assert MemoryItem.objects.filter(user=bob, status="archived").count() == 3
    assert MemoryItem.objects.filter(user=alice, status="archived").count() == 0
    report = audit_verify()
    assert report.first_break is None, "the batched appends kept every chain intact"
    assert report.chains >= 2


def test_a_failing_batch_never_touches_runs_already_done(alice, bob, monkeypatch):
    _store(alice, "alice remembers")
    _store(bob, "bob remembers")
    done = meditation.meditation_run(ctx=_ctx(alice), user=alice)
    queued = MeditationRun.objects.create(
        user=bob, scoring_version="v1", weights=DEFAULT_WEIGHTS,
        as_of=timezone.now(),
    )  # fmt: skip

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(runs, "_audit_runs", broken)
    with pytest.raises(RuntimeError):
        meditation.meditation_run_many(ctx=_ctx(alice), runs=[done, queued])
    done.refresh_from_db()
    queued.refresh_from_db()
    assert done.status == "done" and done.error == ""
    assert queued.status == "failed"


def test_two_queued_runs_of_one_user_in_one_batch_both_run(alice):
    from memory.tasks import meditate_batch

    _store(alice, "one")
    runs = [
        MeditationRun.objects.create(
            user=alice,
            scoring_version="v1",
            weights=DEFAULT_WEIGHTS,
            as_of=timezone.now(),
            dry_run=dry,
        )
        for dry in (False, False, True)
    ]
    assert meditate_batch([r.pk for r in runs]) == 3
    assert set(
        MeditationRun.objects.filter(pk__in=[r.pk for r in runs]).values_list(
            "status", flat=True
        )
    ) == {"done"}


def test_runs_left_queued_are_sent_again_and_the_night_finishes(
    alice, bob, settings, monkeypatch
):
    from memory import tasks

    _store(alice, "alice remembers")
    _store(bob, "bob remembers")
    sent: list[list[int]] = []
    monkeypatch.setattr(tasks.meditate_batch, "delay", lambda ids: sent.append(ids))
    parent = meditation.meditation_queue_all()  # its publish is lost
    assert meditation.meditation_requeue_stale() == 0, "not stale yet"
    old = timezone.now() - timedelta(minutes=settings.MEDITATION_STALE_MINUTES + 1)
    MeditationRun.objects.filter(pk=parent.pk).update(started_at=old)
    parent.children.update(started_at=old)
    sent.clear()
    assert meditation.meditation_requeue_stale() == 2
    resent = sorted(pk for ids in sent for pk in ids)
    assert resent == sorted(parent.children.values_list("pk", flat=True))
    for ids in sent:
        tasks.meditate_batch(ids)
    parent.refresh_from_db()
    assert parent.status == "done" and parent.processed == 2


@pytest.fixture
def broker_down(monkeypatch):
    """Point this process's Celery publisher at a port nothing listens on."""
    import socket

    from kimberly.celery import app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(app.conf, "broker_url", f"redis://127.0.0.1:{port}/1")
    monkeypatch.setattr(app, "_pool", None)  # the cached connection pools
    monkeypatch.setattr(app.amqp, "_producer_pool", None)


@pytest.mark.django_db(transaction=True)
def test_meditate_with_the_broker_down_accepts_one_run_that_a_retry_reuses(
    alice_api, alice, broker_down, settings
):
    first = alice_api.post("/v1/memory/meditate", {}, format="json")
    assert first.status_code == 202, first.content
    assert first.json()["status"] == "queued"
    again = alice_api.post("/v1/memory/meditate", {}, format="json")
    assert again.status_code == 202
    assert again.json()["run_id"] == first.json()["run_id"]
    assert MeditationRun.objects.filter(user=alice).count() == 1
    dry = alice_api.post("/v1/memory/meditate", {"dry_run": True}, format="json")
    assert dry.json()["run_id"] != first.json()["run_id"], "a dry run is another run"
    # Nothing acknowledged is lost: the stale requeue sends it once it is old.
    MeditationRun.objects.update(
        started_at=timezone.now()
        - timedelta(minutes=settings.MEDITATION_STALE_MINUTES + 1)
    )
    from memory import tasks

    sent: list[list[int]] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tasks.meditate_batch, "delay", lambda ids: sent.append(ids))
        assert meditation.meditation_requeue_stale() == 2
    assert first.json()["run_id"] in sent[0]


def test_the_forecast_creates_nothing_and_its_pages_are_one_forecast(
    alice, alice_api, settings
):
    from urllib.parse import quote

    from audit.models import AuditEvent

    settings.MEMORY_QUOTA_DEFAULTS = {
        "short-term": 2_000,
        "long-term": 3_000,
        "permanent": 40_000,
    }
    for n in range(4):  # over the 3,000-byte long-term quota, under its hard limit
        _store(alice, f"{n}" * 700)
    for n in range(3):
        _old_session(alice, n)
    counts = (
        MeditationRun.objects.count(),
        ScoreRecord.objects.count(),
        AuditEvent.objects.count(),
    )
    first = alice_api.get("/v1/memory/forecast?per_page=3").json()
    as_of = quote(first["as_of"])
    pages = [first] + [
        alice_api.get(f"/v1/memory/forecast?per_page=3&page={p}&as_of={as_of}").json()
        for p in (2, 3, 4)
    ]
    assert (
        MeditationRun.objects.count(),
        ScoreRecord.objects.count(),
        AuditEvent.objects.count(),
    ) == counts, "a forecast is a read"
    assert {p["as_of"] for p in pages} == {first["as_of"]}
    assert first["run_id"] is None and first["expired"] == 3
    forecast = [
        (d["memory_id"], d["decision"], d["reason"])
        for p in pages
        for d in p["decisions"]["items"]
    ]
    assert len(forecast) == len(set(forecast)) == first["decisions"]["total"] >= 4
    real = meditation.meditation_run(
        ctx=_ctx(alice),
        user=alice,
        as_of=MeditationRun._meta.get_field("as_of").to_python(first["as_of"]),
    )
    assert sorted(forecast) == sorted(
        (f"mem_{r.item_id}", r.decision, r.reason)
        for r in real.scores.exclude(decision="keep")
    ), "the forecast decides exactly what the real run does"
    bad = alice_api.get("/v1/memory/forecast?as_of=yesterday")
    assert bad.status_code == 400


def test_the_pages_of_a_forecast_agree_even_when_memories_change_in_between(
    alice, alice_api
):
    from urllib.parse import quote

    for n in range(4):
        _old_session(alice, n)
    first = alice_api.get("/v1/memory/forecast?per_page=2").json()
    assert first["decisions"]["total"] == 4
    _old_session(alice, 99)  # a change between page 1 and page 2 (an import, say)
    second = alice_api.get(
        f"/v1/memory/forecast?per_page=2&page=2&as_of={quote(first['as_of'])}"
    ).json()
    assert second["decisions"]["total"] == 4, "page 2 belongs to page 1's forecast"
    ids = [d["memory_id"] for p in (first, second) for d in p["decisions"]["items"]]
    assert len(set(ids)) == 4
    fresh = alice_api.get("/v1/memory/forecast").json()
    assert fresh["decisions"]["total"] == 5, "a new forecast sees the change"


def test_runs_still_queued_after_a_resend_are_sent_again_one_by_one(
    alice, bob, settings, monkeypatch
):
    from memory import tasks

    for user in (alice, bob):
        _store(user, "remembered")
    sent: list[list[int]] = []
    monkeypatch.setattr(tasks.meditate_batch, "delay", lambda ids: sent.append(ids))
    parent = meditation.meditation_queue_all()  # one batch of both users, lost
    stale = settings.MEDITATION_STALE_MINUTES
    parent.children.update(started_at=timezone.now() - timedelta(minutes=stale + 1))
    sent.clear()
    meditation.meditation_requeue_stale()
    assert [len(ids) for ids in sent] == [2], "first resend: the batch as it was"
    # the resend timed out too (a batch that always hits the limit rolls back)
    parent.children.update(started_at=timezone.now() - timedelta(minutes=2 * stale + 1))
    sent.clear()
    meditation.meditation_requeue_stale()
    assert sorted(len(ids) for ids in sent) == [1, 1], "then each run alone"


def test_a_cached_forecast_keeps_ids_not_the_user(alice, alice_api):
    from django.core.cache import cache

    from memory.meditation import forecast as forecast_module

    _store(alice, "something to score")
    body = alice_api.get("/v1/memory/forecast").json()
    as_of = MeditationRun._meta.get_field("as_of").to_python(body["as_of"])
    cached = cache.get(forecast_module._key(alice, as_of))
    assert cached is not None and cached.run.user_id == alice.pk
    assert "user" not in cached.run._state.fields_cache
