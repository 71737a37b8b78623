"""POST /v1/memory/query and the embedding pipeline, on the real stores and model."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import cast

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.test import override_settings
from django.utils import timezone
from django_redis import get_redis_connection

from kimberly.celery import app as celery_app
from kimberly.context import Actor, Context
from memory import embeddings, indexing, retrieval, services
from memory.metadata import MetadataPatch
from memory.models import MemoryEmbedding, MemoryItem, RetrievalRecord
from memory.tests.factories import grant

pytestmark = pytest.mark.django_db

SISTER = "My sister Anna celebrates her birthday on the third of March"
TEA = "I prefer green tea over coffee in the morning"
DEADLINE = "The quarterly report for the Kimberly project is due next Friday"
PARAPHRASE = "when does my sibling turn a year older"  # shares no word with SISTER


def _store(user, content: str, tier: str = "long-term", **metadata) -> MemoryItem:
    ctx = Context(Actor("user", str(user.pk)))
    return services.memory_create(
        ctx=ctx,
        user=user,
        tier=tier,
        content=content,
        metadata=cast(MetadataPatch, metadata) or None,
    ).item


def _embed(*items: MemoryItem) -> None:
    indexing.memory_embed_items([i.id for i in items])


def _query(client, query: str, headers: dict | None = None, **body):
    return client.post(
        "/v1/memory/query", {"query": query, **body}, format="json", **(headers or {})
    )


def _ids(resp) -> list[str]:
    return [r["item"]["id"] for r in resp.json()["results"]]


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_new_memory_is_embedded_by_a_real_worker_and_found_by_a_paraphrase(
    alice_api, alice
):
    import memory.tasks  # noqa: F401 - registers the tasks with the app

    with start_worker(
        celery_app,
        pool="solo",
        perform_ping_check=False,
        loglevel="WARNING",
        queues=[settings.EMBEDDING_QUEUE],
    ):
        for text in (SISTER, TEA, DEADLINE):
            assert (
                alice_api.post(
                    "/v1/memory", {"type": "long-term", "content": text}, format="json"
                ).status_code
                == 201
            )
        deadline = time.monotonic() + 90  # first use loads the model in the worker
        while MemoryEmbedding.objects.filter(user=alice).count() < 3:
            assert time.monotonic() < deadline, (
                "the worker did not embed the new memories"
            )
            time.sleep(0.2)
    resp = _query(alice_api, PARAPHRASE, explain=True)
    assert resp.status_code == 200
    top = resp.json()["results"][0]
    assert top["item"]["content"] == SISTER
    assert top["relevance"]["semantic"] > 0.3
    assert "similar to your query" in top["why"]
    assert top["item"]["embedding_ref"].startswith("emb_")


def test_query_is_lexical_at_once_and_explains_the_match(alice_api, alice):
    _store(alice, TEA, tags=["drinks"])
    _store(alice, DEADLINE)
    resp = _query(alice_api, "coffee", explain=True)
    assert resp.status_code == 200
    body = resp.json()
    assert _ids(resp)[0].startswith("mem_")
    top = body["results"][0]
    assert top["item"]["content"] == TEA
    assert "matched words: coffee" in top["why"]
    assert set(top["relevance"]) == {
        "semantic",
        "lexical",
        "score",
        "freshness",
        "final",
    }
    assert top["relevance"]["lexical"] > 0
    assert set(body["explain"]["timings_ms"]) >= {"lexical"}


@override_settings(EMBEDDING_PROVIDER="disabled")
def test_with_embeddings_off_retrieval_falls_back_to_lexical(
    alice_api, alice, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        item = _store(alice, TEA)
    assert callbacks == [] or not MemoryEmbedding.objects.exists()
    resp = _query(alice_api, "green tea", explain=True)
    assert resp.json()["explain"]["mode"] == "lexical"
    assert _ids(resp) == [item.public_id]
    assert resp.json()["results"][0]["relevance"]["semantic"] is None
    assert _query(alice_api, PARAPHRASE).json()["results"] == []


def test_a_user_who_opted_out_is_never_embedded_and_gets_lexical_results(
    alice_api, alice
):
    alice.embedding_enabled = False
    alice.save()
    item = _store(alice, SISTER)
    assert indexing.memory_embed_items([item.id]) == 0
    assert not MemoryEmbedding.objects.filter(item=item).exists()
    resp = _query(alice_api, "sister birthday", explain=True)
    assert resp.json()["explain"]["mode"] == "lexical"
    assert _ids(resp) == [item.public_id]


def test_bob_never_retrieves_alices_memories(alice, bob, bob_api):
    secret = _store(alice, "The secret launch code of the project is falcon")
    _embed(secret)
    mine = _store(bob, "My own note about a project")
    _embed(mine)
    for query in ("secret launch code falcon", "what is the project code", "project"):
        ids = _ids(_query(bob_api, query, top_k=50))
        assert secret.public_id not in ids
    assert _ids(_query(bob_api, "secret launch code falcon")) in ([], [mine.public_id])


def test_archived_memories_never_come_back(alice_api, alice):
    item = _store(alice, TEA)
    _embed(item)
    ctx = Context(Actor("user", str(alice.pk)))
    services.memory_lifecycle(
        ctx=ctx, user=alice, memory_id=item.public_id, action="archive"
    )
    assert _query(alice_api, "green tea coffee").json()["results"] == []
    assert _query(alice_api, "a hot drink in the morning").json()["results"] == []


def test_sensitive_memories_need_include_sensitive(alice_api, alice):
    # sealed: found by its vector (no words), which needs model_context
    grant(alice, "sensitive_memory", "model_context")
    item = _store(alice, "My bank PIN hint is the dog's birthday", sensitive=True)
    _embed(item)
    assert _query(alice_api, "bank PIN").json()["results"] == []
    resp = _query(alice_api, "bank PIN", filters={"include_sensitive": True})
    assert _ids(resp) == [item.public_id]


def test_filters_restrict_by_tags_tier_and_time(alice_api, alice):
    work = _store(alice, "Report draft for the project", tags=["work", "q3"])
    home = _store(alice, "Project: paint the garden fence", tags=["home"])
    session = _store(alice, "Project call notes from today", tier="short-term")
    assert set(_ids(_query(alice_api, "project", top_k=10))) == {
        work.public_id,
        home.public_id,
        session.public_id,
    }
    assert _ids(_query(alice_api, "project", filters={"tags": ["work"]})) == [
        work.public_id
    ]
    resp = _query(
        alice_api, "project", filters={"tags": ["work", "home"], "tags_mode": "all"}
    )
    assert resp.json()["results"] == []
    assert _ids(_query(alice_api, "project", type="short-term")) == [session.public_id]
    assert (
        _query(alice_api, "project", filters={"until": "2000-01-01T00:00:00Z"}).json()[
            "results"
        ]
        == []
    )


@pytest.mark.parametrize(
    "body, field",
    [
        ({"query": ""}, "query"),
        ({"query": "   "}, "query"),
        ({"query": "x" * 2001}, "query"),
        ({"query": "tea", "top_k": 0}, "top_k"),
        ({"query": "tea", "top_k": 51}, "top_k"),
        ({"query": "tea", "top_k": "many"}, "top_k"),
        ({"query": "tea", "type": "forever"}, "type"),
        ({"query": "tea", "filters": {"tags_mode": "some"}}, "filters"),
        ({"query": "tea", "filters": {"source": "telepathy"}}, "filters.source"),
        ({"query": "tea", "filters": {"colour": "red"}}, "filters"),
        (
            {
                "query": "tea",
                "filters": {
                    "since": "2025-01-02T00:00:00Z",
                    "until": "2025-01-01T00:00:00Z",
                },
            },
            "filters.since",
        ),
        ({"query": "tea", "mode": "magic"}, "mode"),
    ],
)
def test_bad_queries_are_400_naming_the_field(alice_api, alice, body, field):
    _store(alice, TEA)
    resp = alice_api.post("/v1/memory/query", body, format="json")
    assert resp.status_code == 400
    assert resp.json()["error"] == "validation_error"
    assert field in resp.json()["details"]["fields"]


def test_no_memories_is_200_with_empty_results(alice_api):
    resp = _query(alice_api, "anything at all")
    assert resp.status_code == 200
    assert resp.json()["results"] == []


def test_retrieval_updates_access_and_records_provenance_in_batches(alice_api, alice):
    item = _store(alice, TEA)
    _query(alice_api, "green tea", headers={"HTTP_X_REQUEST_ID": "req-provenance-1"})
    _query(alice_api, "coffee")
    item.refresh_from_db()
    assert item.access_count == 0, "the request path does not write access counts"
    assert retrieval.flush_retrieval_log() == 2
    item.refresh_from_db()
    assert item.access_count == 2
    assert item.last_seen_at is not None
    records = RetrievalRecord.objects.filter(item_id=item.id)
    assert records.count() == 2
    assert records.filter(
        request_id="req-provenance-1", rank=1, user_id=alice.pk
    ).exists()


def test_query_embeddings_are_cached_in_redis(alice_api, alice):
    _embed(_store(alice, SISTER))
    conn = get_redis_connection("default")
    assert not conn.keys("kb:qemb:*")
    _query(alice_api, PARAPHRASE)
    assert len(conn.keys("kb:qemb:*")) == 1
    _query(alice_api, PARAPHRASE)
    assert len(conn.keys("kb:qemb:*")) == 1


def test_short_term_session_context_competes_in_results(alice_api, alice):
    session = _store(alice, "Talking about the garden right now", tier="short-term")
    resp = _query(alice_api, "garden")
    assert _ids(resp) == [session.public_id]
    assert "in your current session" in resp.json()["results"][0]["why"]


# --------------------------------------------------------------- embed queue


def test_writes_are_queued_for_embedding_after_commit(
    alice, django_capture_on_commit_callbacks
):
    conn = get_redis_connection("default")
    with django_capture_on_commit_callbacks(execute=True):
        item = _store(alice, TEA)
    assert conn.sismember(indexing.PENDING_KEY, str(item.id))


def test_a_failed_embedding_puts_the_batch_back_and_stays_lexical(alice, alice_api):
    item = _store(alice, TEA)
    conn = get_redis_connection("default")
    conn.sadd(indexing.PENDING_KEY, str(item.id))
    with (
        override_settings(EMBEDDING_PROVIDER="disabled"),
        pytest.raises(embeddings.EmbeddingUnavailable),
    ):
        indexing.drain_pending()
    assert conn.sismember(indexing.PENDING_KEY, str(item.id)), "nothing is dropped"
    assert _ids(_query(alice_api, "green tea")) == [item.public_id]
    assert indexing.drain_pending() == 1
    assert MemoryEmbedding.objects.filter(item=item).exists()


def test_the_sweep_requeues_memories_the_queue_lost(alice):
    item = _store(alice, TEA)
    MemoryItem.objects.filter(pk=item.pk).update(
        updated_at=item.updated_at.replace(year=2020)
    )
    assert indexing.sweep_unembedded() == 1
    assert get_redis_connection("default").sismember(indexing.PENDING_KEY, str(item.id))


def test_an_edit_re_embeds_the_new_content(alice):
    item = _store(alice, TEA)
    _embed(item)
    first = MemoryEmbedding.objects.get(item=item).content_hash
    ctx = Context(Actor("user", str(alice.pk)))
    services.memory_update(
        ctx=ctx, user=alice, memory_id=item.public_id, content=DEADLINE
    )
    assert indexing.memory_embed_items([item.id]) == 1
    assert MemoryEmbedding.objects.get(item=item).content_hash != first
    assert indexing.memory_embed_items([item.id]) == 0, (
        "unchanged content is not re-embedded"
    )


# ------------------------------------------------------------ user vectors


def _vector(seed: int) -> list[float]:
    import random

    rng = random.Random(seed)
    return [rng.uniform(-1, 1) for _ in range(384)]


def test_users_can_upload_their_own_vectors(alice_api, alice):
    item = _store(alice, TEA)
    resp = alice_api.post(
        "/v1/memory/embed",
        {"embeddings": [{"memory_id": item.public_id, "embedding": _vector(1)}]},
        format="json",
    )
    assert resp.status_code == 200
    assert resp.json() == {"received": 1, "stored": 1}
    emb = MemoryEmbedding.objects.get(item=item)
    assert emb.model == indexing.USER_MODEL_TAG
    assert len(emb.vector) == 384


@pytest.mark.parametrize(
    "make_row, field",
    [
        (lambda mid: {"memory_id": mid, "embedding": [0.1] * 383}, "embedding"),
        (lambda mid: {"memory_id": mid, "embedding": [0.1] * 383 + ["x"]}, "embedding"),
        (
            lambda mid: {"memory_id": mid, "embedding": [0.1] * 383 + [True]},
            "embedding",
        ),
        (
            lambda mid: {
                "memory_id": "mem_" + str(uuid.uuid4()),
                "embedding": [0.1] * 384,
            },
            "embeddings",
        ),
        (lambda mid: {"memory_id": "nonsense", "embedding": [0.1] * 384}, "memory_id"),
        (lambda mid: {"memory_id": mid}, "embeddings[0]"),
    ],
)
def test_bad_vectors_are_400_and_store_nothing(alice_api, alice, make_row, field):
    item = _store(alice, TEA)
    resp = alice_api.post(
        "/v1/memory/embed", {"embeddings": [make_row(item.public_id)]}, format="json"
    )
    assert resp.status_code == 400
    assert any(field in name for name in resp.json()["details"]["fields"])
    assert not MemoryEmbedding.objects.exists()


def test_non_finite_numbers_in_a_vector_are_400(alice_api, alice):
    item = _store(alice, TEA)
    numbers = ", ".join(["0.1"] * 383 + ["1e400"])
    body = f'{{"embeddings": [{{"memory_id": "{item.public_id}", "embedding": [{numbers}]}}]}}'
    resp = alice_api.generic(
        "POST", "/v1/memory/embed", body, content_type="application/json"
    )
    assert resp.status_code == 400
    assert not MemoryEmbedding.objects.exists()


def test_a_400_digit_integer_in_a_vector_is_400_not_a_crash(alice_api, alice):
    item = _store(alice, TEA)
    numbers = ", ".join(["0.1"] * 383 + ["9" * 400])
    body = f'{{"embeddings": [{{"memory_id": "{item.public_id}", "embedding": [{numbers}]}}]}}'
    resp = alice_api.generic(
        "POST", "/v1/memory/embed", body, content_type="application/json"
    )
    assert resp.status_code == 400
    assert resp.json()["error"] == "malformed_request"
    assert not MemoryEmbedding.objects.exists()


def test_a_vector_for_another_users_memory_is_refused(alice, bob_api):
    item = _store(alice, TEA)
    resp = bob_api.post(
        "/v1/memory/embed",
        {"embeddings": [{"memory_id": item.public_id, "embedding": _vector(2)}]},
        format="json",
    )
    assert resp.status_code == 400
    assert not MemoryEmbedding.objects.exists()


@pytest.mark.parametrize("strategy", ["exact", "hnsw", "auto"])
def test_every_vector_strategy_finds_the_paraphrase_and_only_the_users_own(
    alice_api, alice, bob, strategy
):
    mine = [_store(alice, text) for text in (SISTER, TEA, DEADLINE)]
    theirs = _store(bob, "My brother Tom celebrates his birthday in June")
    _embed(*mine, theirs)
    with override_settings(
        RETRIEVAL_VECTOR_STRATEGY=strategy, RETRIEVAL_EXACT_MAX_VECTORS=0
    ):
        ids = _ids(_query(alice_api, PARAPHRASE, top_k=10))
    assert ids[0] == mine[0].public_id
    assert theirs.public_id not in ids


# ------------------------------------------------- provenance: window and deletes


def _record(item: MemoryItem, days_ago: float = 0) -> RetrievalRecord:
    return RetrievalRecord.objects.create(
        user_id=item.user_id,
        item_id=item.id,
        rank=1,
        final=0.5,
        created_at=timezone.now() - timedelta(days=days_ago),
    )


def _records(item: MemoryItem) -> int:
    return RetrievalRecord.objects.filter(item_id=item.id).count()


@override_settings(RETRIEVAL_RECORDS_DAYS=7)
def test_the_nightly_retention_drops_provenance_older_than_the_window_only(alice):
    from privacy.tasks import enforce_retention

    def prune_retrieval_records() -> int:
        return enforce_retention()["retrieval_records"]

    item = _store(alice, TEA)
    for days in (30, 8, 6, 0):
        _record(item, days_ago=days)
    assert prune_retrieval_records() == 2
    kept = RetrievalRecord.objects.filter(item_id=item.id).values_list(
        "created_at", flat=True
    )
    assert all(at > timezone.now() - timedelta(days=7) for at in kept)
    assert len(kept) == 2
    assert prune_retrieval_records() == 0, "running it again is harmless"


def test_the_prune_works_through_more_rows_than_one_batch(alice):
    item = _store(alice, TEA)
    for days in (40, 41, 42, 43, 44):
        _record(item, days_ago=days)
    _record(item)
    cutoff = timezone.now() - timedelta(days=30)
    assert retrieval.retrieval_records_prune(cutoff=cutoff, batch_size=2) == 5
    assert _records(item) == 1


def test_the_prune_is_scheduled_in_beat():
    from django.conf import settings

    entries = {e["task"]: e for e in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "privacy.tasks.enforce_retention" in entries


def test_deleting_a_memory_deletes_its_provenance(alice_api, alice):
    gone, kept = _store(alice, TEA), _store(alice, SISTER)
    for item in (gone, kept):
        _record(item)
    assert alice_api.delete(f"/v1/memory/{gone.public_id}").status_code == 204
    assert (_records(gone), _records(kept)) == (0, 1)


def test_a_bulk_delete_deletes_the_provenance_of_every_listed_memory(alice_api, alice):
    a, b, kept = _store(alice, TEA), _store(alice, SISTER), _store(alice, DEADLINE)
    for item in (a, b, kept):
        _record(item)
    resp = alice_api.post(
        "/v1/memory/bulk",
        {"action": "delete", "ids": [a.public_id, b.public_id]},
        format="json",
    )
    assert resp.status_code == 200
    assert (_records(a), _records(b), _records(kept)) == (0, 0, 1)


def test_a_memory_purged_by_meditation_takes_its_provenance_with_it(alice):
    from memory import meditation

    old = _store(alice, TEA)
    _record(old, days_ago=40)
    ctx = Context(Actor("user", str(alice.pk)))
    services.memory_lifecycle(
        ctx=ctx, user=alice, memory_id=old.public_id, action="archive"
    )
    MemoryItem.objects.filter(pk=old.pk).update(
        archived_at=timezone.now() - timedelta(days=31)
    )
    assert meditation.meditation_run(ctx=ctx, user=alice).purged == 1
    assert _records(old) == 0


def test_deleting_a_user_deletes_their_provenance(alice, bob):
    mine, theirs = _store(alice, TEA), _store(bob, TEA)
    _record(mine)
    _record(theirs)
    alice_id = alice.pk
    alice.delete()  # (sets alice.pk to None)
    assert not RetrievalRecord.objects.filter(user_id=alice_id).exists()
    assert _records(theirs) == 1


def test_a_flush_drops_the_provenance_of_memories_deleted_since_their_query(
    alice_api, alice
):
    gone, kept = _store(alice, TEA), _store(alice, "green tea with honey")
    assert len(_ids(_query(alice_api, "green tea"))) == 2
    assert alice_api.delete(f"/v1/memory/{gone.public_id}").status_code == 204
    assert retrieval.flush_retrieval_log() == 1
    assert (_records(gone), _records(kept)) == (0, 1)
    assert get_redis_connection("default").llen(retrieval.LOG_KEY) == 0
