"""Keeping vectors true to their text: edits, the sweep, `memory reembed`, goals,
the backlog a user and an operator can see, and the drain under a failing model.
Real PostgreSQL, Valkey and model throughout."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone
from django_redis import get_redis_connection
from prometheus_client.parser import text_string_to_metric_families

from kimberly.celery import app as celery_app
from memory import embeddings, indexing, retrieval, services
from memory.indexing import queue
from memory.models import Goal, MemoryEmbedding, MemoryItem
from memory.tests.factories import ctx_for, memory_for

pytestmark = pytest.mark.django_db

SISTER = "My sister Anna celebrates her birthday on the third of March"
TEA = "I prefer green tea over coffee in the morning"
PARAPHRASE = "when does my sibling turn a year older"  # shares no word with SISTER


def _semantic_ids(user: Any, query: str) -> list[uuid.UUID]:
    hits = retrieval.memory_query(user=user, query=query, mode="semantic", log=False)
    return [h.item.id for h in hits.hits]


def _embedded(*items: MemoryItem) -> None:
    assert indexing.memory_embed_items([i.id for i in items]) == len(items)


def _pending_ids() -> set[str]:
    conn = get_redis_connection("default")
    return {m.decode() for m in conn.smembers(indexing.PENDING_KEY)}


def _rewrite_behind_the_services(item: MemoryItem, content: str, days: int) -> None:
    """Content changed long ago with the vector left as it was: what an edit made
    before this fix (or a re-embed lost days ago) left in the database."""
    MemoryItem.objects.filter(pk=item.pk).update(
        content=content, updated_at=timezone.now() - timedelta(days=days)
    )


# ------------------------------------------------------------- stale vectors


def test_an_edit_made_while_embeddings_are_off_is_never_matched_by_its_old_text(
    alice,
):
    item = memory_for(alice, SISTER)
    _embedded(item)
    assert _semantic_ids(alice, PARAPHRASE) == [item.id]
    alice.embedding_enabled = False
    alice.save(update_fields=["embedding_enabled"])
    services.memory_update(
        ctx=ctx_for(alice), user=alice, memory_id=item.public_id, content=TEA
    )
    alice.embedding_enabled = True
    alice.save(update_fields=["embedding_enabled"])

    assert item.id not in _semantic_ids(alice, PARAPHRASE)
    item.refresh_from_db()
    assert item.embedding_ref == "", "waiting for a vector of its new text"
    assert not MemoryEmbedding.objects.filter(item=item).exists()


def test_the_sweep_repairs_a_vector_of_changed_text_whatever_its_age(alice):
    item = memory_for(alice, SISTER)
    _embedded(item)
    _rewrite_behind_the_services(item, TEA, days=3)

    assert indexing.sweep_unembedded() == 1
    assert str(item.id) in _pending_ids()
    assert item.id not in _semantic_ids(alice, PARAPHRASE), "dropped, not served"
    assert indexing.memory_embed_items([item.id]) == 1
    assert MemoryEmbedding.objects.get(item=item).content_hash == (
        embeddings.content_hash(TEA)
    )


def test_the_sweep_checks_every_memory_over_successive_runs(alice):
    items = [memory_for(alice, f"{SISTER} ({n})") for n in range(3)]
    _embedded(*items)
    _rewrite_behind_the_services(items[2], TEA, days=30)

    for _ in range(3):  # one memory checked per run
        indexing.sweep_unembedded(limit=1)

    assert _pending_ids() == {str(items[2].id)}
    assert not MemoryEmbedding.objects.filter(item=items[2]).exists()


def test_reembed_queues_and_drops_vectors_of_changed_text(alice):
    current = memory_for(alice, TEA)
    changed = memory_for(alice, SISTER)
    _embedded(current, changed)
    _rewrite_behind_the_services(changed, "I moved to Lisbon in May", days=400)
    out = StringIO()

    call_command("memory", "reembed", stdout=out)

    assert "queued 1 memories" in out.getvalue()
    assert _pending_ids() == {str(changed.id)}
    assert changed.id not in _semantic_ids(alice, PARAPHRASE)


# --------------------------------------------------------------------- goals


def test_a_goal_records_the_model_and_text_its_vector_was_made_from(alice):
    goal = services.goal_create(ctx=ctx_for(alice), user=alice, text="Run a marathon")
    goal.refresh_from_db()
    assert goal.vector is not None
    assert goal.model == embeddings.model_tag()
    assert goal.content_hash == embeddings.content_hash("Run a marathon")


def test_the_sweep_embeds_a_goal_made_while_the_model_was_down(alice):
    with override_settings(EMBEDDING_PROVIDER="disabled"):
        goal = services.goal_create(ctx=ctx_for(alice), user=alice, text="Learn Go")
    assert Goal.objects.get(pk=goal.pk).vector is None

    indexing.sweep_unembedded()

    goal.refresh_from_db()
    assert goal.vector is not None
    assert goal.model == embeddings.model_tag()


def test_the_sweep_re_embeds_a_goal_vector_of_another_model(alice):
    goal = services.goal_create(ctx=ctx_for(alice), user=alice, text="Learn Go")
    Goal.objects.filter(pk=goal.pk).update(model="old-model@1", vector=[0.5] * 384)

    indexing.sweep_unembedded()

    goal.refresh_from_db()
    assert goal.model == embeddings.model_tag()
    assert goal.vector[0] != pytest.approx(0.5)


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_reembed_repairs_goal_vectors_through_a_real_worker(alice):
    import memory.tasks  # noqa: F401 - registers the tasks with the app

    goal = services.goal_create(ctx=ctx_for(alice), user=alice, text="Learn Go")
    Goal.objects.filter(pk=goal.pk).update(model="old-model@1", vector=None)
    out = StringIO()
    with start_worker(
        celery_app,
        pool="solo",
        perform_ping_check=False,
        loglevel="WARNING",
        queues=[settings.EMBEDDING_QUEUE],
    ):
        call_command("memory", "reembed", stdout=out)
        deadline = time.monotonic() + 90  # the worker loads the model first
        while Goal.objects.get(pk=goal.pk).model != embeddings.model_tag():
            assert time.monotonic() < deadline, "the worker did not embed the goal"
            time.sleep(0.2)
    assert "1 goals" in out.getvalue()
    assert Goal.objects.get(pk=goal.pk).vector is not None


# ---------------------------------------------------------- visible backlog


def _backlog_gauge(api: Any) -> float:
    resp = api.get("/metrics")
    assert resp.status_code == 200
    for family in text_string_to_metric_families(resp.content.decode()):
        for sample in family.samples:
            if sample.name == "kimberly_embedding_backlog":
                return float(sample.value)
    raise AssertionError("kimberly_embedding_backlog not exported")


@pytest.mark.parametrize("multiprocess", [False, True])
def test_the_backlog_gauge_counts_what_waits_when_it_is_scraped(
    api, alice, bob, multiprocess, monkeypatch, tmp_path
):
    if multiprocess:  # how gunicorn runs under `make run`
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    waiting = [memory_for(alice, f"note {n}") for n in range(3)]
    memory_for(bob, "bob's, embeddings off")
    bob.embedding_enabled = False
    bob.save(update_fields=["embedding_enabled"])

    assert _backlog_gauge(api) == 3
    _embedded(*waiting[:2])
    assert _backlog_gauge(api) == 1


def test_memory_metrics_report_this_users_memories_waiting_for_a_vector(
    alice, alice_api, bob
):
    done = memory_for(alice, TEA)
    memory_for(alice, SISTER)
    memory_for(alice, "archived, not waiting", archived=True)
    memory_for(bob, "bob's")
    _embedded(done)

    body = alice_api.get("/v1/memory/metrics").json()

    assert body["embedding_pending"] == 1


def test_the_memory_list_shows_indexing_progress_with_embedded(alice, alice_api):
    done = memory_for(alice, TEA)
    waiting = memory_for(alice, SISTER)
    _embedded(done)

    def listed(flag: str) -> list[str]:
        resp = alice_api.get(f"/v1/memory?embedded={flag}")
        assert resp.status_code == 200, resp.content
        return [i["id"] for i in resp.json()["items"]]

    assert listed("true") == [done.public_id]
    assert listed("false") == [waiting.public_id]


# ------------------------------------------------------------- drain task


def test_a_failing_model_keeps_one_retrying_drain_instead_of_one_per_write(alice):
    conn = get_redis_connection("default")
    item = memory_for(alice, TEA)
    conn.sadd(indexing.PENDING_KEY, str(item.id))
    conn.set(indexing.SCHEDULED_KEY, "1")  # this drain task is running
    with (
        override_settings(EMBEDDING_PROVIDER="disabled"),
        pytest.raises(embeddings.EmbeddingUnavailable),
    ):
        indexing.drain_pending()

    assert conn.exists(indexing.SCHEDULED_KEY), (
        "the retrying task still owns the drain: a write must not start another"
    )
    assert conn.ttl(indexing.SCHEDULED_KEY) > indexing.RETRY_BACKOFF_MAX
    assert str(item.id) in _pending_ids()


def test_a_drain_that_gives_up_lets_the_next_write_start_one(alice):
    from memory.tasks import embed_pending

    conn = get_redis_connection("default")
    item = memory_for(alice, TEA)
    conn.sadd(indexing.PENDING_KEY, str(item.id))
    conn.set(indexing.SCHEDULED_KEY, "1")
    with override_settings(EMBEDDING_PROVIDER="disabled"):
        result = embed_pending.apply()  # eager: every retry runs at once

    assert result.failed()
    assert not conn.exists(indexing.SCHEDULED_KEY)
    assert str(item.id) in _pending_ids()


def test_under_a_stream_of_writes_a_short_batch_waits_for_more(alice):
    items = [memory_for(alice, f"note number {n}") for n in range(4)]
    conn = get_redis_connection("default")
    conn.sadd(indexing.PENDING_KEY, str(items[0].id))
    later = threading.Timer(
        0.05, lambda: conn.sadd(indexing.PENDING_KEY, *[str(i.id) for i in items[1:]])
    )
    later.start()
    try:
        claimed = queue._claim(conn, 4, linger=5.0)
    finally:
        later.join()

    assert sorted(claimed) == sorted(i.id for i in items)
    assert queue._claim(conn, 4, linger=5.0) == [], "an empty queue never waits"
