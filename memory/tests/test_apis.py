from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from kimberly.context import Actor, Context
from memory.models import MemoryItem, Quota
from memory.quotas import quota_set
from memory.services import memory_update
from memory.tests.factories import (
    assert_usage_is_exact,
    memory_for,
    stored_bytes,
    used_bytes,
)

pytestmark = pytest.mark.django_db

ITEM_FIELDS = {
    "id",
    "type",
    "content",
    "size_bytes",
    "metadata",
    "score",
    "embedding_ref",
    "status",
    "protected",
    "created_at",
    "updated_at",
    "last_seen_at",
    "archived_at",
    "access_count",
    "audit",
}
DEFAULT_METADATA = {
    "tags": [],
    "source": "api",
    "channels": [],
    "sensitive": False,
    "scope": "private",
    "user_feedback": None,
}
# Quota 1000 bytes per tier → hard limit 1250 (125%).
SMALL_QUOTAS = override_settings(
    MEMORY_QUOTA_DEFAULTS={"short-term": 1000, "long-term": 1000, "permanent": 1000}
)


def _create(api, content: Any = "Alice's cat is called Miso", tier="long-term", **kw):
    body: dict[str, Any] = {"type": tier, "content": content}
    if "metadata" in kw:
        body["metadata"] = kw.pop("metadata")
    return api.post("/v1/memory", body, format="json", **kw)


def _ids(resp) -> list[str]:
    assert resp.status_code == 200, resp.json()
    return [item["id"] for item in resp.json()["items"]]


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def _system() -> Context:
    return Context(Actor.system("test"))


def _memory_events(user) -> int:
    return AuditEvent.objects.filter(
        user_id=user.pk, action__startswith="memory."
    ).count()


# ------------------------------------------------------------------- create


def test_create_returns_201_with_every_field_of_the_stored_item(alice_api, alice):
    metadata = {
        "tags": ["pets", "home"],
        "source": "chat",
        "channels": ["web"],
        "sensitive": False,
        "scope": "shared",
        "user_feedback": "rating:4",
    }
    resp = _create(alice_api, "Alice's cat is called Miso", metadata=metadata)

    assert resp.status_code == 201
    body = resp.json()
    assert set(body) == ITEM_FIELDS
    assert body["id"].startswith("mem_")
    uuid.UUID(body["id"].removeprefix("mem_"))
    assert body["type"] == "long-term"
    assert body["content"] == "Alice's cat is called Miso"
    assert body["metadata"] == {**metadata, "version": 1}
    assert body["score"] == 0.0
    assert body["embedding_ref"] is None
    assert body["status"] == "active"
    assert body["protected"] is False
    assert _parse(body["created_at"]) == _parse(body["updated_at"])
    assert abs(timezone.now() - _parse(body["created_at"])) < timedelta(minutes=1)
    assert body["last_seen_at"] is None
    assert body["archived_at"] is None
    assert body["access_count"] == 0
    assert body["audit"] == {"created_by": "user", "consent": True}
    assert body["size_bytes"] > len(body["content"])
    # It is really stored: reading it back gives the same item.
    assert alice_api.get(f"/v1/memory/{body['id']}").json() == body
    assert used_bytes(alice)["long-term"] == body["size_bytes"]


def test_create_without_metadata_gets_the_default_metadata(alice_api):
    resp = _create(alice_api, "Remember to water the plants", tier="short-term")
    assert resp.status_code == 201
    assert resp.json()["metadata"] == {**DEFAULT_METADATA, "version": 1}
    assert resp.json()["type"] == "short-term"


def test_size_counts_utf8_bytes_of_the_content_not_characters(alice_api):
    ascii_item = _create(alice_api, "a" * 10).json()
    accented = _create(alice_api, "é" * 10).json()
    assert accented["size_bytes"] - ascii_item["size_bytes"] == 10


def test_size_counts_the_metadata_too(alice_api):
    bare = _create(alice_api, "same words").json()
    tagged = _create(alice_api, "same words", metadata={"tags": ["x" * 40]}).json()
    assert tagged["size_bytes"] >= bare["size_bytes"] + 40


def test_content_of_exactly_64_kib_is_accepted(alice_api, alice):
    resp = _create(alice_api, "a" * 65536, tier="permanent")
    assert resp.status_code == 201
    assert MemoryItem.objects.get(user=alice).content == "a" * 65536


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("a" * 65537, id="one byte over"),
        # 32769 characters, but 65538 UTF-8 bytes: the limit is in bytes.
        pytest.param("é" * 32769, id="multibyte over"),
    ],
)
def test_content_over_64_kib_is_413_content_too_large_and_stores_nothing(
    alice_api, alice, content
):
    memory_for(alice, "an earlier memory", tier="permanent")
    before = used_bytes(alice)

    resp = _create(alice_api, content, tier="permanent")

    assert resp.status_code == 413
    body = resp.json()
    assert body["error"] == "content_too_large"
    assert body["code"] == 413
    assert body["details"]["max_bytes"] == 65536
    assert body["details"]["size_bytes"] == len(content.encode())
    assert MemoryItem.objects.filter(user=alice).count() == 1
    assert used_bytes(alice) == before


def test_content_far_over_the_limit_is_still_a_json_413(alice_api, alice):
    alice_api.raise_request_exception = False
    resp = _create(alice_api, "a" * 3_000_000, tier="permanent")
    assert resp.status_code == 413
    body = resp.json()
    assert set(body) == {"error", "message", "code", "details"}
    assert body["code"] == 413
    assert not MemoryItem.objects.filter(user=alice).exists()


INVALID_CREATES = [
    pytest.param({"type": "long-term", "content": ""}, "content", id="empty content"),
    pytest.param(
        {"type": "long-term", "content": " \n\t "}, "content", id="blank content"
    ),
    pytest.param({"type": "long-term"}, "content", id="missing content"),
    pytest.param(
        {"type": "long-term", "content": ["a", "list"]}, "content", id="list content"
    ),
    pytest.param(
        {"type": "long-term", "content": "nul\x00byte"}, "content", id="NUL in content"
    ),
    pytest.param({"content": "no tier"}, "type", id="missing type"),
    pytest.param({"type": "forever", "content": "x"}, "type", id="unknown type"),
    pytest.param(
        {
            "type": "long-term",
            "content": "x",
            "metadata": {"tags": list("abcdefghijklmnopqrstuvwxyzABCDEFG")},
        },
        "metadata.tags",
        id="33 tags",
    ),
    pytest.param(
        {"type": "long-term", "content": "x", "metadata": {"tags": ["t" * 65]}},
        "metadata.tags",
        id="65-char tag",
    ),
    pytest.param(
        {"type": "long-term", "content": "x", "metadata": {"tags": ["ok", " "]}},
        "metadata.tags",
        id="blank tag",
    ),
    pytest.param(
        {"type": "long-term", "content": "x", "metadata": {"tags": "a,b"}},
        "metadata.tags",
        id="tags not a list",
    ),
    pytest.param(
        {"type": "long-term", "content": "x", "metadata": {"tags": [1, 2]}},
        "metadata.tags",
        id="tags not strings",
    ),
    pytest.param(
        {
            "type": "long-term",
            "content": "x",
            "metadata": {"channels": [f"c{i}" for i in range(17)]},
        },
        "metadata.channels",
        id="17 channels",
    ),
    pytest.param(
        {"type": "long-term", "content": "x", "metadata": {"source": "email"}},
        "metadata.source",
        id="unknown source",
    ),
    pytest.param(
        {"type": "long-term", "content": "x", "metadata": {"scope": "everyone"}},
        "metadata.scope",
        id="unknown scope",
    ),
    pytest.param(
        {"type": "long-term", "content": "x", "metadata": {"sensitive": "yes"}},
        "metadata.sensitive",
        id="sensitive as string",
    ),
    pytest.param(
        {"type": "long-term", "content": "x", "metadata": {"sensitive": 1}},
        "metadata.sensitive",
        id="sensitive as number",
    ),
    pytest.param(
        {
            "type": "long-term",
            "content": "x",
            "metadata": {"user_feedback": "rating:6"},
        },
        "metadata.user_feedback",
        id="rating out of range",
    ),
    pytest.param(
        {
            "type": "long-term",
            "content": "x",
            "metadata": {"user_feedback": "loved it"},
        },
        "metadata.user_feedback",
        id="free-text feedback",
    ),
    pytest.param(
        {"type": "long-term", "content": "x", "metadata": {"colour": "blue"}},
        "metadata",
        id="unknown metadata key",
    ),
    pytest.param(
        {"type": "long-term", "content": "x", "metadata": ["tags"]},
        "metadata",
        id="metadata not an object",
    ),
    pytest.param(
        {"type": "long-term", "content": "x", "score": 0.9},
        "score",
        id="unknown field score",
    ),
    pytest.param(
        {"type": "long-term", "content": "x", "user_id": str(uuid.uuid4())},
        "user_id",
        id="unknown field user_id",
    ),
]


@pytest.mark.parametrize("payload, field", INVALID_CREATES)
def test_invalid_create_is_400_naming_the_field_and_stores_nothing(
    alice_api, alice, payload, field
):
    memory_for(alice, "an earlier memory")
    before_usage, before_events = used_bytes(alice), _memory_events(alice)

    resp = alice_api.post("/v1/memory", payload, format="json")

    assert resp.status_code == 400
    body = resp.json()
    assert body["error"] == "validation_error"
    assert body["code"] == 400
    assert body["message"]
    assert field in body["details"]["fields"]
    assert MemoryItem.objects.filter(user=alice).count() == 1
    assert used_bytes(alice) == before_usage
    assert _memory_events(alice) == before_events


def test_32_tags_of_64_characters_are_accepted(alice_api):
    tags = [f"{i:02d}" + "t" * 62 for i in range(32)]
    resp = _create(alice_api, "many tags", metadata={"tags": tags})
    assert resp.status_code == 201
    assert resp.json()["metadata"]["tags"] == tags


@pytest.mark.parametrize(
    "feedback", ["thumbs_up", "thumbs_down", "rating:1", "rating:5", None]
)
def test_every_valid_feedback_value_is_accepted(alice_api, feedback):
    resp = _create(alice_api, "rated", metadata={"user_feedback": feedback})
    assert resp.status_code == 201
    assert resp.json()["metadata"]["user_feedback"] == feedback


@pytest.mark.parametrize(
    "field, escaped",
    [
        pytest.param("tags", "nul\\u0000tag", id="NUL in a tag"),
        pytest.param("tags", "\\ud800", id="lone surrogate in a tag"),
        pytest.param("channels", "nul\\u0000channel", id="NUL in a channel"),
    ],
)
def test_a_metadata_string_that_cannot_be_stored_is_400_not_500(
    alice_api, alice, field, escaped
):
    # Raw JSON: the escapes must reach the server as the client sent them.
    raw = (
        '{"type": "long-term", "content": "x", '
        f'"metadata": {{"{field}": ["{escaped}"]}}}}'
    )
    alice_api.raise_request_exception = False
    resp = alice_api.generic("POST", "/v1/memory", raw, content_type="application/json")
    assert resp.status_code == 400
    assert resp.json()["error"] == "validation_error"
    assert not MemoryItem.objects.filter(user=alice).exists()


def test_create_requires_authentication(api):
    resp = _create(api)
    assert resp.status_code == 401
    assert not MemoryItem.objects.exists()


# -------------------------------------------------------------------- quotas


@SMALL_QUOTAS
def test_a_write_may_burst_up_to_the_hard_limit_but_not_one_byte_past_it(
    alice_api, alice
):
    first = _create(alice_api, "x").json()
    overhead = first["size_bytes"] - 1
    # Fill the tier to exactly its hard limit (1250 bytes).
    fill = 1250 - first["size_bytes"] - overhead
    assert _create(alice_api, "y" * fill).status_code == 201
    assert used_bytes(alice)["long-term"] == 1250

    resp = _create(alice_api, "z")

    assert resp.status_code == 429
    body = resp.json()
    assert body["error"] == "quota_exceeded"
    assert body["code"] == 429
    details = body["details"]
    assert {k: details[k] for k in ("tier", "used_bytes", "limit_bytes")} == {
        "tier": "long-term",
        "used_bytes": 1250,
        "limit_bytes": 1000,
    }
    assert details["hard_limit_bytes"] == 1250
    assert MemoryItem.objects.filter(user=alice).count() == 2
    assert used_bytes(alice)["long-term"] == 1250
    assert _memory_events(alice) == 2


@SMALL_QUOTAS
def test_a_single_write_larger_than_the_hard_limit_is_refused_on_an_empty_tier(
    alice_api, alice
):
    resp = _create(alice_api, "w" * 1251)
    assert resp.status_code == 429
    assert resp.json()["details"]["used_bytes"] == 0
    assert not MemoryItem.objects.filter(user=alice).exists()
    assert used_bytes(alice)["long-term"] == 0


@SMALL_QUOTAS
def test_writes_between_the_soft_and_hard_limit_succeed(alice_api, alice):
    first = _create(alice_api, "a" * 600).json()
    second = _create(alice_api, "b" * 400)
    assert second.status_code == 201
    total = first["size_bytes"] + second.json()["size_bytes"]
    assert 1000 < total <= 1250

    tier = alice_api.get("/v1/memory/metrics").json()["tiers"]["long-term"]
    assert tier["used_bytes"] == total
    assert tier["used_bytes"] > tier["quota_bytes"]


@SMALL_QUOTAS
def test_a_full_tier_does_not_block_the_other_tiers(alice_api, alice):
    assert _create(alice_api, "a" * 1100).status_code == 201
    assert _create(alice_api, "b" * 300).status_code == 429
    assert _create(alice_api, "b" * 300, tier="short-term").status_code == 201
    assert _create(alice_api, "b" * 300, tier="permanent").status_code == 201
    assert_usage_is_exact(alice)


@SMALL_QUOTAS
def test_one_users_full_tier_does_not_block_another_user(alice_api, bob_api, bob):
    assert _create(alice_api, "a" * 1100).status_code == 201
    assert _create(alice_api, "b" * 300).status_code == 429
    assert _create(bob_api, "b" * 300).status_code == 201
    assert_usage_is_exact(bob)


@override_settings(
    MEMORY_QUOTA_DEFAULTS={"short-term": 1000, "long-term": 1000, "permanent": 1000},
    QUOTA_HARD_LIMIT_RATIO=1.5,
)
def test_the_hard_limit_ratio_is_a_setting(alice_api, alice):
    tier = alice_api.get("/v1/memory/metrics").json()["tiers"]["long-term"]
    assert (tier["quota_bytes"], tier["hard_limit_bytes"]) == (1000, 1500)
    assert _create(alice_api, "a" * 1300).status_code == 201
    resp = _create(alice_api, "b" * 200)
    assert resp.status_code == 429
    assert resp.json()["details"]["hard_limit_bytes"] == 1500


def test_a_quota_override_is_used_instead_of_the_default(alice_api, alice):
    quota_set(ctx=_system(), user_id=alice.pk, tier="permanent", limit_bytes=400)
    resp = _create(alice_api, "p" * 600, tier="permanent")
    assert resp.status_code == 429
    assert resp.json()["details"]["limit_bytes"] == 400
    assert resp.json()["details"]["hard_limit_bytes"] == 500
    assert _create(alice_api, "p" * 300, tier="permanent").status_code == 201


# --------------------------------------------------------------- idempotency


def test_a_retried_write_with_the_same_idempotency_key_returns_the_same_item(
    alice_api, alice
):
    first = _create(alice_api, "only once", HTTP_IDEMPOTENCY_KEY="retry-123")
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first

    retry = _create(alice_api, "only once", HTTP_IDEMPOTENCY_KEY="retry-123")

    assert retry.status_code == 201
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.json() == first.json()
    assert MemoryItem.objects.filter(user=alice).count() == 1
    assert used_bytes(alice)["long-term"] == first.json()["size_bytes"]
    assert (
        AuditEvent.objects.filter(user_id=alice.pk, action="memory.create").count() == 1
    )


def test_the_same_idempotency_key_with_a_different_body_is_409(alice_api, alice):
    first = _create(alice_api, "the original", HTTP_IDEMPOTENCY_KEY="k-1").json()

    for changed in (
        {"type": "long-term", "content": "something else"},
        {"type": "permanent", "content": "the original"},
        {"type": "long-term", "content": "the original", "metadata": {"tags": ["x"]}},
    ):
        resp = alice_api.post(
            "/v1/memory", changed, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
        )
        assert resp.status_code == 409
        assert resp.json()["error"] == "idempotency_key_reused"

    assert list(
        MemoryItem.objects.filter(user=alice).values_list("content", flat=True)
    ) == ["the original"]
    assert used_bytes(alice) == {
        "short-term": 0,
        "long-term": first["size_bytes"],
        "permanent": 0,
    }


def test_different_idempotency_keys_store_separate_items(alice_api, alice):
    a = _create(alice_api, "same words", HTTP_IDEMPOTENCY_KEY="key-a").json()
    b = _create(alice_api, "same words", HTTP_IDEMPOTENCY_KEY="key-b").json()
    assert a["id"] != b["id"]
    assert MemoryItem.objects.filter(user=alice).count() == 2
    assert_usage_is_exact(alice)


@SMALL_QUOTAS
def test_a_write_refused_for_quota_can_be_retried_with_its_key_once_there_is_room(
    alice_api, alice
):
    big = _create(alice_api, "a" * 1100).json()
    refused = _create(alice_api, "b" * 300, HTTP_IDEMPOTENCY_KEY="later")
    assert refused.status_code == 429
    alice_api.post(f"/v1/memory/{big['id']}/archive")

    retry = _create(alice_api, "b" * 300, HTTP_IDEMPOTENCY_KEY="later")

    assert retry.status_code == 201
    assert "Idempotent-Replayed" not in retry


def test_an_idempotency_key_over_128_characters_is_400(alice_api, alice):
    resp = _create(alice_api, HTTP_IDEMPOTENCY_KEY="k" * 129)
    assert resp.status_code == 400
    assert not MemoryItem.objects.filter(user=alice).exists()


# ---------------------------------------------------------------------- list


def test_list_shows_active_items_newest_first_paginated(alice_api, alice):
    older = memory_for(alice, "first")
    newer = memory_for(alice, "second", tier="short-term")
    memory_for(alice, "gone", archived=True)

    resp = alice_api.get("/v1/memory")

    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"items", "page", "per_page", "total"}
    assert [i["id"] for i in body["items"]] == [newer.public_id, older.public_id]
    assert (body["page"], body["per_page"], body["total"]) == (1, 20, 2)
    assert set(body["items"][0]) == ITEM_FIELDS


def test_list_filters_by_type(alice_api, alice):
    st = memory_for(alice, "a", tier="short-term")
    memory_for(alice, "b", tier="long-term")
    pm = memory_for(alice, "c", tier="permanent")
    assert _ids(alice_api.get("/v1/memory", {"type": "short-term"})) == [st.public_id]
    assert _ids(alice_api.get("/v1/memory", {"type": "permanent"})) == [pm.public_id]


def test_list_filters_by_tags_any_or_all(alice_api, alice):
    both = memory_for(alice, "both", metadata={"tags": ["work", "urgent"]})
    work = memory_for(alice, "work", metadata={"tags": ["work"]})
    urgent = memory_for(alice, "urgent", metadata={"tags": ["urgent", "home"]})
    memory_for(alice, "untagged")

    any_ = alice_api.get("/v1/memory", {"tags": "work,urgent"})
    assert set(_ids(any_)) == {both.public_id, work.public_id, urgent.public_id}
    repeated = alice_api.get("/v1/memory?tags=work&tags=urgent&tags_mode=any")
    assert set(_ids(repeated)) == {both.public_id, work.public_id, urgent.public_id}
    all_ = alice_api.get("/v1/memory", {"tags": "work,urgent", "tags_mode": "all"})
    assert _ids(all_) == [both.public_id]
    one = alice_api.get("/v1/memory", {"tags": "home"})
    assert _ids(one) == [urgent.public_id]


def test_list_filters_by_status(alice_api, alice):
    active = memory_for(alice, "active")
    archived = memory_for(alice, "archived", archived=True)
    assert _ids(alice_api.get("/v1/memory", {"status": "active"})) == [active.public_id]
    assert _ids(alice_api.get("/v1/memory", {"status": "archived"})) == [
        archived.public_id
    ]
    assert set(_ids(alice_api.get("/v1/memory", {"status": "all"}))) == {
        active.public_id,
        archived.public_id,
    }


def test_list_filters_by_creation_time_window(alice_api, alice):
    now = timezone.now()
    old = memory_for(alice, "last year")
    mid = memory_for(alice, "last week")
    new = memory_for(alice, "today")
    MemoryItem.objects.filter(pk=old.pk).update(created_at=now - timedelta(days=365))
    MemoryItem.objects.filter(pk=mid.pk).update(created_at=now - timedelta(days=7))

    since = (now - timedelta(days=30)).isoformat()
    until = (now - timedelta(days=1)).isoformat()
    assert _ids(alice_api.get("/v1/memory", {"since": since})) == [
        new.public_id,
        mid.public_id,
    ]
    assert _ids(alice_api.get("/v1/memory", {"until": until})) == [
        mid.public_id,
        old.public_id,
    ]
    assert _ids(alice_api.get("/v1/memory", {"since": since, "until": until})) == [
        mid.public_id
    ]


def test_list_filters_by_text_contained_in_the_content_ignoring_case(alice_api, alice):
    hit = memory_for(alice, "Alice's dentist is Dr. Moreau")
    memory_for(alice, "Alice likes jazz")
    assert _ids(alice_api.get("/v1/memory", {"q": "DENTIST"})) == [hit.public_id]
    assert _ids(alice_api.get("/v1/memory", {"q": "opera"})) == []


def test_list_text_search_treats_percent_and_underscore_literally(alice_api, alice):
    hit = memory_for(alice, "battery at 100% after charging")
    memory_for(alice, "battery at 1000 after charging")
    memory_for(alice, "snake_case names")
    assert _ids(alice_api.get("/v1/memory", {"q": "100%"})) == [hit.public_id]
    assert _ids(alice_api.get("/v1/memory", {"q": "e_c"})) != []
    assert _ids(alice_api.get("/v1/memory", {"q": "y_a"})) == []


def test_list_filters_by_source(alice_api, alice):
    chat = memory_for(alice, "from chat", metadata={"source": "chat"})
    memory_for(alice, "from api")
    assert _ids(alice_api.get("/v1/memory", {"source": "chat"})) == [chat.public_id]


def test_list_filters_combine(alice_api, alice):
    hit = memory_for(
        alice, "Plan the Lisbon trip", tier="short-term", metadata={"tags": ["travel"]}
    )
    memory_for(alice, "Plan the Lisbon trip", metadata={"tags": ["travel"]})
    memory_for(alice, "Plan dinner", tier="short-term", metadata={"tags": ["travel"]})
    resp = alice_api.get(
        "/v1/memory", {"type": "short-term", "tags": "travel", "q": "lisbon"}
    )
    assert _ids(resp) == [hit.public_id]


def test_list_pages_through_every_item_once(alice_api, alice):
    created = [memory_for(alice, f"note {n}").public_id for n in range(25)]

    pages = [
        alice_api.get("/v1/memory", {"per_page": 10, "page": p}).json()
        for p in (1, 2, 3, 4)
    ]

    assert [len(p["items"]) for p in pages] == [10, 10, 5, 0]
    assert all(p["total"] == 25 and p["per_page"] == 10 for p in pages)
    seen = [i["id"] for p in pages for i in p["items"]]
    assert seen == list(reversed(created))


def test_list_allows_100_per_page(alice_api, alice):
    memory_for(alice)
    resp = alice_api.get("/v1/memory", {"per_page": 100})
    assert resp.status_code == 200
    assert resp.json()["per_page"] == 100


@pytest.mark.parametrize(
    "ordering, expected",
    [
        ("size_bytes", ["small", "medium", "large"]),
        ("-size_bytes", ["large", "medium", "small"]),
        ("created_at", ["medium", "large", "small"]),
        ("-created_at", ["small", "large", "medium"]),
    ],
)
def test_list_orders_as_asked(alice_api, alice, ordering, expected):
    by_content = {
        "medium": memory_for(alice, "m" * 50),
        "large": memory_for(alice, "l" * 500),
        "small": memory_for(alice, "s"),
    }
    names = {item.public_id: name for name, item in by_content.items()}
    resp = alice_api.get("/v1/memory", {"ordering": ordering})
    assert [names[i] for i in _ids(resp)] == expected


@pytest.mark.parametrize(
    "params, field",
    [
        ({"per_page": 101}, "per_page"),
        ({"per_page": 0}, "per_page"),
        ({"page": 0}, "page"),
        ({"page": "two"}, "page"),
        ({"ordering": "content"}, "ordering"),
        ({"ordering": "user_id"}, "ordering"),
        ({"type": "forever"}, "type"),
        ({"status": "deleted"}, "status"),
        ({"tags_mode": "most"}, "tags_mode"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2024-13-45"}, "until"),
        ({"source": "email"}, "source"),
        ({"user": "bob@example.com"}, "user"),
    ],
)
def test_bad_list_parameters_are_400_naming_the_parameter(
    alice_api, alice, params, field
):
    memory_for(alice)
    resp = alice_api.get("/v1/memory", params)
    assert resp.status_code == 400
    body = resp.json()
    assert body["error"] == "validation_error"
    assert field in body["details"]["fields"]


# -------------------------------------------------------------- read / edit


def test_get_returns_the_item(alice_api, alice):
    item = memory_for(alice, "Alice's bike lock code is in the drawer")
    resp = alice_api.get(f"/v1/memory/{item.public_id}")
    assert resp.status_code == 200
    assert resp.json()["id"] == item.public_id
    assert resp.json()["content"] == "Alice's bike lock code is in the drawer"


@pytest.mark.parametrize(
    "memory_id",
    [
        f"mem_{uuid.UUID(int=7)}",
        "mem_not-a-uuid",
        str(uuid.UUID(int=7)),
        "42",
    ],
)
def test_an_unknown_or_malformed_id_is_404(alice_api, alice, memory_id):
    memory_for(alice)
    resp = alice_api.get(f"/v1/memory/{memory_id}")
    assert resp.status_code == 404
    assert resp.json()["error"] == "not_found"


def test_patch_content_changes_it_bumps_the_version_and_moves_usage(alice_api, alice):
    item = _create(alice_api, "short").json()

    resp = alice_api.patch(
        f"/v1/memory/{item['id']}", {"content": "a much longer text"}, format="json"
    )

    assert resp.status_code == 200
    body = resp.json()
    assert body["content"] == "a much longer text"
    assert body["metadata"]["version"] == 2
    assert body["size_bytes"] == item["size_bytes"] + len(" much longer text") - 4
    assert _parse(body["updated_at"]) > _parse(body["created_at"])
    assert body["created_at"] == item["created_at"]
    assert used_bytes(alice)["long-term"] == body["size_bytes"]
    assert alice_api.get(f"/v1/memory/{item['id']}").json() == body


def test_patch_metadata_changes_only_the_keys_given(alice_api, alice):
    item = _create(
        alice_api,
        "tagged",
        metadata={"tags": ["a"], "source": "chat", "scope": "shared"},
    ).json()

    resp = alice_api.patch(
        f"/v1/memory/{item['id']}",
        {"metadata": {"tags": ["b", "c"], "user_feedback": "thumbs_up"}},
        format="json",
    )

    assert resp.status_code == 200
    assert resp.json()["metadata"] == {
        **DEFAULT_METADATA,
        "tags": ["b", "c"],
        "source": "chat",
        "scope": "shared",
        "user_feedback": "thumbs_up",
        "version": 2,
    }
    assert resp.json()["content"] == "tagged"
    assert_usage_is_exact(alice)


def test_patch_type_moves_the_item_and_its_bytes_to_the_other_tier(alice_api, alice):
    item = _create(alice_api, "promote me", tier="short-term").json()

    resp = alice_api.patch(
        f"/v1/memory/{item['id']}", {"type": "permanent"}, format="json"
    )

    assert resp.status_code == 200
    assert resp.json()["type"] == "permanent"
    assert used_bytes(alice) == {
        "short-term": 0,
        "long-term": 0,
        "permanent": item["size_bytes"],
    }
    assert _ids(alice_api.get("/v1/memory", {"type": "permanent"})) == [item["id"]]


@override_settings(
    MEMORY_QUOTA_DEFAULTS={
        "short-term": 100,
        "long-term": 2 * 1024 * 1024,
        "permanent": 10 * 1024 * 1024,
    }
)
def test_patch_type_into_a_full_tier_is_429_and_changes_nothing(alice_api, alice):
    item = _create(alice_api, "x" * 200).json()

    resp = alice_api.patch(
        f"/v1/memory/{item['id']}", {"type": "short-term"}, format="json"
    )

    assert resp.status_code == 429
    body = resp.json()
    assert body["error"] == "quota_exceeded"
    assert body["details"]["tier"] == "short-term"
    assert body["details"]["limit_bytes"] == 100
    assert body["details"]["hard_limit_bytes"] == 125
    assert alice_api.get(f"/v1/memory/{item['id']}").json() == item
    assert used_bytes(alice)["long-term"] == item["size_bytes"]
    assert used_bytes(alice)["short-term"] == 0
    assert alice_api.get(f"/v1/memory/{item['id']}/history").json()["versions"] == []


@SMALL_QUOTAS
def test_patch_that_grows_content_past_the_hard_limit_is_429(alice_api, alice):
    item = _create(alice_api, "x" * 900).json()
    resp = alice_api.patch(
        f"/v1/memory/{item['id']}", {"content": "x" * 1300}, format="json"
    )
    assert resp.status_code == 429
    assert alice_api.get(f"/v1/memory/{item['id']}").json()["content"] == "x" * 900
    assert_usage_is_exact(alice)


def test_an_edit_that_frees_bytes_is_allowed_even_over_the_limit(alice_api, alice):
    item = _create(alice_api, "x" * 900).json()
    quota_set(ctx=_system(), user_id=alice.pk, tier="long-term", limit_bytes=100)

    resp = alice_api.patch(
        f"/v1/memory/{item['id']}", {"content": "x" * 10}, format="json"
    )

    assert resp.status_code == 200
    assert_usage_is_exact(alice)


@pytest.mark.parametrize(
    "payload, status, field",
    [
        ({"content": ""}, 400, "content"),
        ({"content": "  "}, 400, "content"),
        ({"type": "forever"}, 400, "type"),
        ({"metadata": {"tags": ["t" * 65]}}, 400, "metadata.tags"),
        ({"metadata": {"scope": "everyone"}}, 400, "metadata.scope"),
        ({"metadata": {"colour": "blue"}}, 400, "metadata"),
        ({"status": "archived"}, 400, "status"),
        ({"protected": True}, 400, "protected"),
        ({"size_bytes": 1}, 400, "size_bytes"),
    ],
)
def test_invalid_patch_is_rejected_and_changes_nothing(
    alice_api, alice, payload, status, field
):
    item = _create(alice_api, "keep me", metadata={"tags": ["a"]}).json()

    resp = alice_api.patch(f"/v1/memory/{item['id']}", payload, format="json")

    assert resp.status_code == status
    assert resp.json()["error"] == "validation_error"
    assert field in resp.json()["details"]["fields"]
    assert alice_api.get(f"/v1/memory/{item['id']}").json() == item
    assert_usage_is_exact(alice)


def test_patch_with_content_over_64_kib_is_413(alice_api, alice):
    item = _create(alice_api, "small", tier="permanent").json()
    resp = alice_api.patch(
        f"/v1/memory/{item['id']}", {"content": "a" * 65537}, format="json"
    )
    assert resp.status_code == 413
    assert resp.json()["error"] == "content_too_large"
    assert alice_api.get(f"/v1/memory/{item['id']}").json() == item


def test_patch_that_changes_nothing_keeps_the_version(alice_api, alice):
    item = _create(alice_api, "same").json()
    resp = alice_api.patch(
        f"/v1/memory/{item['id']}",
        {"content": "same", "type": "long-term"},
        format="json",
    )
    assert resp.status_code == 200
    assert resp.json() == item
    history = alice_api.get(f"/v1/memory/{item['id']}/history").json()
    assert history == {"current": item, "versions": []}


def test_history_shows_the_item_now_and_every_earlier_state_oldest_first(
    alice_api, alice
):
    item = _create(alice_api, "first draft", metadata={"tags": ["v1"]}).json()
    url = f"/v1/memory/{item['id']}"
    alice_api.patch(url, {"content": "second draft"}, format="json")
    alice_api.patch(
        url, {"type": "permanent", "metadata": {"tags": ["v3"]}}, format="json"
    )
    alice_api.post(f"{url}/protect")
    alice_api.post(f"{url}/archive")

    resp = alice_api.get(f"{url}/history")

    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"current", "versions"}
    assert body["current"] == alice_api.get(url).json()
    assert body["current"]["metadata"]["version"] == 5
    rows = body["versions"]
    # Version n is the state the item had at version n, and the action that
    # moved it on from there: enough to explain every edit and roll one back.
    assert [r["version"] for r in rows] == [1, 2, 3, 4]
    assert [r["action"] for r in rows] == ["update", "update", "protect", "archive"]
    assert [r["content"] for r in rows] == ["first draft"] + ["second draft"] * 3
    assert [r["tier"] for r in rows] == [
        "long-term",
        "long-term",
        "permanent",
        "permanent",
    ]
    assert [r["metadata"]["tags"] for r in rows] == [["v1"], ["v1"], ["v3"], ["v3"]]
    assert [r["protected"] for r in rows] == [False, False, False, True]
    assert [r["status"] for r in rows] == ["active"] * 4
    assert {(r["actor_type"], r["actor_id"]) for r in rows} == {("user", str(alice.pk))}
    changed = [_parse(r["changed_at"]) for r in rows]
    assert changed == sorted(changed)
    assert changed[0] > _parse(item["created_at"])


def test_history_of_a_new_item_has_no_earlier_versions(alice_api, alice):
    item = _create(alice_api, "brand new").json()
    resp = alice_api.get(f"/v1/memory/{item['id']}/history")
    assert resp.status_code == 200
    assert resp.json() == {"current": item, "versions": []}


def test_history_records_who_changed_the_item(alice_api, alice):
    item = memory_for(alice, "edited by the operator")

    memory_update(
        ctx=_system(), user=alice, memory_id=item.public_id, content="fixed by ops"
    )

    rows = alice_api.get(f"/v1/memory/{item.public_id}/history").json()["versions"]
    assert [(r["actor_type"], r["actor_id"], r["content"]) for r in rows] == [
        ("system", "test", "edited by the operator")
    ]


def test_delete_removes_the_item_and_releases_its_bytes(alice_api, alice):
    keep = memory_for(alice, "keep")
    item = _create(alice_api, "forget me").json()

    resp = alice_api.delete(f"/v1/memory/{item['id']}")

    assert resp.status_code == 204
    assert alice_api.get(f"/v1/memory/{item['id']}").status_code == 404
    assert alice_api.get(f"/v1/memory/{item['id']}/history").status_code == 404
    assert _ids(alice_api.get("/v1/memory", {"status": "all"})) == [keep.public_id]
    assert used_bytes(alice)["long-term"] == keep.size_bytes
    assert alice_api.delete(f"/v1/memory/{item['id']}").status_code == 404


def test_deleting_an_archived_item_does_not_release_its_bytes_twice(alice_api, alice):
    keep = memory_for(alice, "keep")
    gone = memory_for(alice, "archived then deleted", archived=True)
    assert alice_api.delete(f"/v1/memory/{gone.public_id}").status_code == 204
    assert used_bytes(alice)["long-term"] == keep.size_bytes


# ---------------------------------------------------------------- lifecycle


def test_protect_and_unprotect(alice_api, alice):
    item = memory_for(alice)
    url = f"/v1/memory/{item.public_id}"

    protected = alice_api.post(f"{url}/protect")
    assert protected.status_code == 200
    assert protected.json()["protected"] is True
    assert protected.json()["metadata"]["version"] == 2
    assert alice_api.get(url).json()["protected"] is True

    again = alice_api.post(f"{url}/protect")
    assert again.status_code == 200
    assert again.json()["metadata"]["version"] == 2

    unprotected = alice_api.post(f"{url}/unprotect")
    assert unprotected.status_code == 200
    assert unprotected.json()["protected"] is False
    assert alice_api.get(url).json()["protected"] is False
    assert_usage_is_exact(alice)


def test_archive_hides_the_item_and_releases_its_bytes(alice_api, alice):
    keep = memory_for(alice, "keep")
    item = memory_for(alice, "archive me")
    url = f"/v1/memory/{item.public_id}"

    resp = alice_api.post(f"{url}/archive")

    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "archived"
    assert abs(timezone.now() - _parse(body["archived_at"])) < timedelta(minutes=1)
    assert body["content"] == "archive me"
    assert _ids(alice_api.get("/v1/memory")) == [keep.public_id]
    assert used_bytes(alice)["long-term"] == keep.size_bytes
    metrics = alice_api.get("/v1/memory/metrics").json()["tiers"]["long-term"]
    assert (metrics["active_items"], metrics["archived_items"]) == (1, 1)
    # Archiving twice is a no-op, not a second release.
    assert alice_api.post(f"{url}/archive").status_code == 200
    assert used_bytes(alice)["long-term"] == keep.size_bytes


def test_restore_brings_the_item_back_and_counts_its_bytes_again(alice_api, alice):
    item = memory_for(alice, "bring me back", archived=True)
    url = f"/v1/memory/{item.public_id}"

    resp = alice_api.post(f"{url}/restore")

    assert resp.status_code == 200
    assert resp.json()["status"] == "active"
    assert resp.json()["archived_at"] is None
    assert _ids(alice_api.get("/v1/memory")) == [item.public_id]
    assert used_bytes(alice)["long-term"] == item.size_bytes
    assert alice_api.post(f"{url}/restore").status_code == 200
    assert used_bytes(alice)["long-term"] == item.size_bytes


@SMALL_QUOTAS
def test_restore_into_a_full_tier_is_429_and_the_item_stays_archived(alice_api, alice):
    archived = memory_for(alice, "a" * 600, archived=True)
    memory_for(alice, "b" * 600)

    resp = alice_api.post(f"/v1/memory/{archived.public_id}/restore")

    assert resp.status_code == 429
    assert resp.json()["error"] == "quota_exceeded"
    assert resp.json()["details"]["tier"] == "long-term"
    assert alice_api.get(f"/v1/memory/{archived.public_id}").json()["status"] == (
        "archived"
    )
    assert_usage_is_exact(alice)


@pytest.mark.parametrize("action", ["protect", "unprotect", "archive", "restore"])
def test_lifecycle_on_an_unknown_id_is_404(alice_api, alice, action):
    resp = alice_api.post(f"/v1/memory/mem_{uuid.UUID(int=9)}/{action}")
    assert resp.status_code == 404
    assert resp.json()["error"] == "not_found"


# --------------------------------------------------------------------- bulk


def _bulk(api, action: str, ids: list[str]):
    return api.post("/v1/memory/bulk", {"action": action, "ids": ids}, format="json")


def test_bulk_archive_archives_every_listed_item(alice_api, alice):
    a, b, c = (memory_for(alice, f"note {n}") for n in range(3))

    resp = _bulk(alice_api, "archive", [a.public_id, b.public_id])

    assert resp.status_code == 200
    assert resp.json() == {"action": "archive", "requested": 2, "changed": 2}
    assert _ids(alice_api.get("/v1/memory")) == [c.public_id]
    assert used_bytes(alice)["long-term"] == c.size_bytes


def test_bulk_counts_only_items_it_really_changed(alice_api, alice):
    a = memory_for(alice, "already archived", archived=True)
    b = memory_for(alice, "active")
    resp = _bulk(alice_api, "archive", [a.public_id, b.public_id])
    assert resp.json() == {"action": "archive", "requested": 2, "changed": 1}
    assert_usage_is_exact(alice)


def test_bulk_restore_protect_and_unprotect(alice_api, alice):
    a = memory_for(alice, "a", archived=True)
    b = memory_for(alice, "b", archived=True)
    ids = [a.public_id, b.public_id]

    assert _bulk(alice_api, "restore", ids).json()["changed"] == 2
    assert set(_ids(alice_api.get("/v1/memory"))) == set(ids)
    assert _bulk(alice_api, "protect", ids).json()["changed"] == 2
    assert all(i["protected"] for i in alice_api.get("/v1/memory").json()["items"])
    assert _bulk(alice_api, "unprotect", ids).json()["changed"] == 2
    assert not any(i["protected"] for i in alice_api.get("/v1/memory").json()["items"])
    assert_usage_is_exact(alice)


def test_bulk_delete_deletes_every_listed_item(alice_api, alice):
    a = memory_for(alice, "a")
    b = memory_for(alice, "b", archived=True, tier="short-term")
    c = memory_for(alice, "c")

    resp = _bulk(alice_api, "delete", [a.public_id, b.public_id])

    assert resp.status_code == 200
    assert resp.json()["changed"] == 2
    assert _ids(alice_api.get("/v1/memory", {"status": "all"})) == [c.public_id]
    assert used_bytes(alice) == {
        "short-term": 0,
        "long-term": c.size_bytes,
        "permanent": 0,
    }


def test_bulk_export_returns_the_items_and_changes_nothing(alice_api, alice):
    a = memory_for(alice, "export me", metadata={"tags": ["x"]})
    b = memory_for(alice, "me too", archived=True)
    before = {
        i: alice_api.get(f"/v1/memory/{i}").json() for i in (a.public_id, b.public_id)
    }

    resp = _bulk(alice_api, "export", [a.public_id, b.public_id])

    assert resp.status_code == 200
    body = resp.json()
    assert (body["action"], body["requested"]) == ("export", 2)
    assert {i["id"]: i for i in body["items"]} == before
    assert {i: alice_api.get(f"/v1/memory/{i}").json() for i in before} == before


@pytest.mark.parametrize("action", ["export", "archive", "restore", "protect"])
def test_bulk_does_not_reach_a_hidden_sensitive_item_but_delete_does(
    alice_api, alice, action
):
    hidden = memory_for(alice, "my diagnosis", metadata={"sensitive": True})
    MemoryItem.objects.filter(pk=hidden.pk).update(consent=False)
    resp = _bulk(alice_api, action, [hidden.public_id])
    assert resp.status_code == 404 and "my diagnosis" not in resp.content.decode()
    assert _bulk(alice_api, "delete", [hidden.public_id]).status_code == 200
    assert not MemoryItem.objects.filter(pk=hidden.pk).exists()


@pytest.mark.parametrize("action", ["archive", "delete", "protect", "export"])
@pytest.mark.parametrize(
    "bad_id", [f"mem_{uuid.UUID(int=5)}", "mem_garbage", "not-an-id"]
)
def test_bulk_with_one_unknown_id_is_404_and_changes_nothing(
    alice_api, alice, action, bad_id
):
    items = [memory_for(alice, f"note {n}") for n in range(3)]
    ids = [i.public_id for i in items]
    before = alice_api.get("/v1/memory", {"status": "all"}).json()

    resp = _bulk(alice_api, action, [ids[0], bad_id, ids[1]])

    assert resp.status_code == 404
    assert resp.json()["error"] == "not_found"
    assert resp.json()["details"]["missing"] == [bad_id]
    assert alice_api.get("/v1/memory", {"status": "all"}).json() == before
    assert_usage_is_exact(alice)


@SMALL_QUOTAS
def test_bulk_restore_that_would_pass_the_hard_limit_restores_none(alice_api, alice):
    a = memory_for(alice, "a" * 500, archived=True)
    b = memory_for(alice, "b" * 500, archived=True)
    c = memory_for(alice, "c" * 500, archived=True)

    resp = _bulk(alice_api, "restore", [a.public_id, b.public_id, c.public_id])

    assert resp.status_code == 429
    assert resp.json()["error"] == "quota_exceeded"
    assert _ids(alice_api.get("/v1/memory")) == []
    assert used_bytes(alice)["long-term"] == 0


def test_bulk_with_more_than_500_ids_is_400_and_changes_nothing(alice_api, alice):
    item = memory_for(alice)
    resp = _bulk(alice_api, "delete", [item.public_id] * 501)
    assert resp.status_code == 400
    assert resp.json()["error"] == "validation_error"
    assert "ids" in resp.json()["details"]["fields"]
    assert alice_api.get(f"/v1/memory/{item.public_id}").status_code == 200


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"action": "explode", "ids": ["mem_x"]}, "action"),
        ({"action": "archive", "ids": []}, "ids"),
        ({"action": "archive", "ids": "mem_x"}, "ids"),
        ({"action": "archive"}, "ids"),
        ({"ids": ["mem_x"]}, "action"),
        ({"action": "archive", "ids": ["mem_x"], "force": True}, "force"),
    ],
)
def test_bad_bulk_requests_are_400(alice_api, alice, payload, field):
    item = memory_for(alice)
    payload = {
        k: ([item.public_id] if v == ["mem_x"] else v) for k, v in payload.items()
    }
    resp = alice_api.post("/v1/memory/bulk", payload, format="json")
    assert resp.status_code == 400
    assert field in resp.json()["details"]["fields"]
    assert alice_api.get(f"/v1/memory/{item.public_id}").json()["status"] == "active"


# ------------------------------------------------------------------ metrics


def test_metrics_show_default_quotas_for_a_new_user(alice_api):
    resp = alice_api.get("/v1/memory/metrics")

    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {
        "tiers",
        "last_meditation",
        "embedding_enabled",
        "embedding_pending",
    }
    assert body["last_meditation"] is None
    assert body["embedding_enabled"] is True
    assert body["embedding_pending"] == 0
    quotas = {"short-term": 524288, "long-term": 2097152, "permanent": 10485760}
    assert body["tiers"] == {
        tier: {
            "quota_bytes": q,
            "hard_limit_bytes": q * 5 // 4,
            "used_bytes": 0,
            "override": False,
            "active_items": 0,
            "archived_items": 0,
        }
        for tier, q in quotas.items()
    }


def test_metrics_count_bytes_and_items_per_tier(alice_api, alice):
    st = memory_for(alice, "session note", tier="short-term")
    lt1 = memory_for(alice, "likes jazz")
    memory_for(alice, "old habit", archived=True)
    lt2 = memory_for(alice, "works remotely", protected=True)
    memory_for(alice, "deleted later", tier="permanent")
    gone = memory_for(alice, "deleted", tier="permanent")
    alice_api.delete(f"/v1/memory/{gone.public_id}")

    tiers = alice_api.get("/v1/memory/metrics").json()["tiers"]

    assert tiers["short-term"]["used_bytes"] == st.size_bytes
    assert tiers["long-term"]["used_bytes"] == lt1.size_bytes + lt2.size_bytes
    assert {t: (v["active_items"], v["archived_items"]) for t, v in tiers.items()} == {
        "short-term": (1, 0),
        "long-term": (2, 1),
        "permanent": (1, 0),
    }
    assert {t: v["used_bytes"] for t, v in tiers.items()} == stored_bytes(alice)


def test_metrics_show_an_override_and_the_embedding_setting(alice_api, alice):
    quota_set(ctx=_system(), user_id=alice.pk, tier="long-term", limit_bytes=4000)
    alice_api.put("/v1/user", {"embedding_enabled": False}, format="json")

    body = alice_api.get("/v1/memory/metrics").json()

    assert body["tiers"]["long-term"]["quota_bytes"] == 4000
    assert body["tiers"]["long-term"]["hard_limit_bytes"] == 5000
    assert body["tiers"]["long-term"]["override"] is True
    assert body["tiers"]["permanent"]["override"] is False
    assert body["embedding_enabled"] is False


def test_memory_endpoints_require_authentication(api, alice):
    item = memory_for(alice)
    for method, url in [
        ("get", "/v1/memory"),
        ("get", "/v1/memory/metrics"),
        ("get", f"/v1/memory/{item.public_id}"),
        ("get", f"/v1/memory/{item.public_id}/history"),
        ("patch", f"/v1/memory/{item.public_id}"),
        ("delete", f"/v1/memory/{item.public_id}"),
        ("post", f"/v1/memory/{item.public_id}/archive"),
        ("post", "/v1/memory/bulk"),
    ]:
        if method == "get":
            resp = api.get(url)
        else:
            resp = getattr(api, method)(url, {}, format="json")
        assert resp.status_code == 401, (method, url)
    assert MemoryItem.objects.get(pk=item.pk).status == "active"


# -------------------------------------------------------------------- admin


def test_admin_lists_and_shows_memory_items(admin_client, alice):
    item = memory_for(alice, "visible to operators")
    listing = admin_client.get(reverse("admin:memory_memoryitem_changelist"))
    assert listing.status_code == 200
    assert str(item.pk) in listing.content.decode()
    search = admin_client.get(
        reverse("admin:memory_memoryitem_changelist"), {"q": "alice@example.com"}
    )
    assert search.status_code == 200
    assert str(item.pk) in search.content.decode()
    detail = admin_client.get(reverse("admin:memory_memoryitem_change", args=[item.pk]))
    assert detail.status_code == 200
    assert "visible to operators" in detail.content.decode()


def test_admin_cannot_add_edit_or_delete_memory_items(admin_client, alice):
    item = memory_for(alice, "hands off")
    assert admin_client.get(reverse("admin:memory_memoryitem_add")).status_code == 403
    delete_url = reverse("admin:memory_memoryitem_delete", args=[item.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    admin_client.post(
        reverse("admin:memory_memoryitem_change", args=[item.pk]),
        {"content": "rewritten", "tier": "permanent", "size_bytes": 1},
    )
    item.refresh_from_db()
    assert (item.content, item.tier) == ("hands off", "long-term")
    assert_usage_is_exact(alice)


def test_admin_can_override_a_quota_but_not_its_usage(admin_client, alice):
    memory_for(alice)
    quota = Quota.objects.get(user=alice, tier="long-term")
    used = quota.used_bytes
    url = reverse("admin:memory_quota_change", args=[quota.pk])
    assert admin_client.get(reverse("admin:memory_quota_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:memory_quota_add")).status_code == 403

    resp = admin_client.post(url, {"limit_bytes": "5000", "used_bytes": "0"})

    assert resp.status_code == 302
    quota.refresh_from_db()
    assert (quota.limit_bytes, quota.used_bytes) == (5000, used)


def test_the_admin_never_shows_a_sensitive_memorys_text_and_audits_its_changes(
    admin_client, alice
):
    from audit.models import AuditEvent
    from memory.models import Quota

    secret = memory_for(alice, "My PIN is 4321", metadata={"sensitive": True})
    plain = memory_for(alice, "Alice likes marmalade")
    page = admin_client.get(f"/admin/memory/memoryitem/{secret.pk}/change/")
    assert page.status_code == 200 and b"4321" not in page.content
    assert b"sensitive: never shown" in page.content
    page = admin_client.get(f"/admin/memory/memoryitem/{plain.pk}/change/")
    assert b"marmalade" in page.content  # a superuser sees plain content
    quota = Quota.objects.get(user=alice, tier="long-term")
    r = admin_client.post(
        f"/admin/memory/quota/{quota.pk}/change/", {"limit_bytes": 4096}
    )
    assert r.status_code == 302, r.content[:500]
    event = AuditEvent.objects.get(action="admin.change")
    assert event.user_id == alice.pk and event.actor_type == "admin"
    assert event.details == {"fields": ["Limit bytes"]}  # labels, never values


@pytest.mark.parametrize(
    ("role", "may_change_quota"), [("support", False), ("operator", True)]
)
def test_support_sees_metadata_only_and_operators_also_manage_quotas(
    client, alice, role, may_change_quota
):
    from django.contrib.auth.models import Group

    from memory.models import Quota
    from users.models import User

    staff = User.objects.create_user(
        email=f"{role}@example.com", password="x-Pass-123456"
    )
    staff.is_staff = True
    staff.save()
    staff.groups.add(Group.objects.get(name=role))
    client.force_login(staff)
    plain = memory_for(alice, "Alice likes marmalade")
    page = client.get(f"/admin/memory/memoryitem/{plain.pk}/change/")
    assert page.status_code == 200
    assert b"marmalade" not in page.content  # metadata, not content
    quota = Quota.objects.get(user=alice, tier="long-term")
    r = client.post(f"/admin/memory/quota/{quota.pk}/change/", {"limit_bytes": 4096})
    assert (r.status_code == 302) is may_change_quota
    assert AuditEvent.objects.filter(action="admin.change").exists() is may_change_quota
