"""Short-term context: served from Redis, never lost when Redis loses everything."""

from __future__ import annotations

import shutil

import pytest
from django_redis import get_redis_connection

from kimberly import runtime
from kimberly.context import Actor, Context
from memory import services
from memory.constants import Tier
from memory.short_term import short_term_context

pytestmark = pytest.mark.django_db


def _ctx(user) -> Context:
    return Context(Actor("user", str(user.pk)))


def _create(user, content: str, tier: str = Tier.SHORT_TERM):
    return services.memory_create(
        ctx=_ctx(user), user=user, tier=tier, content=content
    ).item


def _ids(entries) -> list[str]:
    return [e["id"] for e in entries]


def test_context_lists_active_short_term_items_most_recent_first(alice, bob):
    a1 = _create(alice, "first thing")
    a2 = _create(alice, "second thing")
    _create(alice, "a long-term fact", tier=Tier.LONG_TERM)
    _create(bob, "bob's session")
    assert _ids(short_term_context(user_id=alice.pk)) == [a2.public_id, a1.public_id]


def test_context_is_served_from_redis_after_the_first_read(
    alice, django_assert_num_queries
):
    item = _create(alice, "cached")
    short_term_context(user_id=alice.pk)
    with django_assert_num_queries(0):
        assert _ids(short_term_context(user_id=alice.pk)) == [item.public_id]


def test_edits_archive_and_delete_write_through(
    alice, django_capture_on_commit_callbacks
):
    keep = _create(alice, "keep me")
    gone = _create(alice, "delete me")
    moved = _create(alice, "promote me")
    archived = _create(alice, "archive me")
    assert len(short_term_context(user_id=alice.pk)) == 4
    with django_capture_on_commit_callbacks(execute=True):
        services.memory_update(
            ctx=_ctx(alice), user=alice, memory_id=keep.public_id, content="kept!"
        )
        services.memory_delete(ctx=_ctx(alice), user=alice, memory_id=gone.public_id)
        services.memory_update(
            ctx=_ctx(alice), user=alice, memory_id=moved.public_id, tier=Tier.LONG_TERM
        )
        services.memory_lifecycle(
            ctx=_ctx(alice), user=alice, memory_id=archived.public_id, action="archive"
        )
    context = short_term_context(user_id=alice.pk)
    assert _ids(context) == [keep.public_id]
    assert context[0]["content"] == "kept!"


def test_losing_redis_loses_no_short_term_item_and_the_context_comes_back(
    alice_api, alice
):
    port = runtime.valkey_port()
    if port is None:
        pytest.skip(
            "Valkey is external (REDIS_URL set): this test restarts the embedded one"
        )
    ids = []
    for text in ("before the outage 1", "before the outage 2"):
        resp = alice_api.post(
            "/v1/memory", {"type": "short-term", "content": text}, format="json"
        )
        assert resp.status_code == 201
        ids.append(resp.json()["id"])
    assert _ids(short_term_context(user_id=alice.pk)) == ids[::-1]

    runtime.stop_valkey()
    try:
        # Writes are acknowledged while Redis is down (PostgreSQL is the record)...
        resp = alice_api.post(
            "/v1/memory",
            {"type": "short-term", "content": "during the outage"},
            format="json",
        )
        assert resp.status_code == 201
        ids.append(resp.json()["id"])
        # ...and the context is still answered, from PostgreSQL.
        assert _ids(short_term_context(user_id=alice.pk)) == ids[::-1]
    finally:
        # Start it again EMPTY: throw away its append-only file.
        shutil.rmtree(runtime.VALKEY_DIR / "appendonlydir", ignore_errors=True)
        (runtime.VALKEY_DIR / "dump.rdb").unlink(missing_ok=True)
        runtime.start_valkey(port=port)

    assert get_redis_connection("default").dbsize() == 0, "Valkey came back empty"
    assert _ids(short_term_context(user_id=alice.pk)) == ids[::-1]
    assert get_redis_connection("default").dbsize() > 0, "the cache was rebuilt"
