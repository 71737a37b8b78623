"""Prometheus /metrics: memory store gauges and write counters, never per user."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from django.test import override_settings
from prometheus_client.parser import text_string_to_metric_families

from memory.metrics import MemoryStoreCollector
from memory.tests.factories import memory_for, stored_bytes

pytestmark = pytest.mark.django_db

SMALL_QUOTAS = override_settings(
    MEMORY_QUOTA_DEFAULTS={"short-term": 1000, "long-term": 1000, "permanent": 1000}
)
MEMORY_METRICS = (
    "kimberly_memory_items",
    "kimberly_memory_bytes",
    "kimberly_memory_writes_total",
    "kimberly_quota_rejections_total",
)


def _scrape(api: Any) -> tuple[str, dict[tuple[str, frozenset[Any]], float]]:
    """GET /metrics fresh (the store gauges are cached for 15 s to keep scrapes
    cheap; drop that cache so this scrape reads the database)."""
    cache.delete(MemoryStoreCollector.CACHE_KEY)
    resp = api.get("/metrics")
    assert resp.status_code == 200
    text = resp.content.decode()
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return text, samples


def _value(
    samples: dict[tuple[str, frozenset[Any]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _post(api: Any, content: str, tier: str = "long-term") -> int:
    return int(
        api.post(
            "/v1/memory", {"type": tier, "content": content}, format="json"
        ).status_code
    )


def test_store_gauges_count_items_per_tier_and_status(api, alice, bob):
    memory_for(alice, "a1")
    memory_for(alice, "a2", archived=True)
    memory_for(alice, "a3", tier="short-term")
    memory_for(bob, "b1")
    memory_for(bob, "b2", tier="permanent", archived=True)

    _, samples = _scrape(api)

    assert (
        _value(samples, "kimberly_memory_items", tier="long-term", status="active") == 2
    )
    assert (
        _value(samples, "kimberly_memory_items", tier="long-term", status="archived")
        == 1
    )
    assert (
        _value(samples, "kimberly_memory_items", tier="short-term", status="active")
        == 1
    )
    assert (
        _value(samples, "kimberly_memory_items", tier="permanent", status="archived")
        == 1
    )
    assert (
        _value(samples, "kimberly_memory_items", tier="permanent", status="active") == 0
    )


def test_store_gauges_sum_active_bytes_per_tier_over_all_users(api, alice, bob):
    memory_for(alice, "a" * 100)
    memory_for(alice, "archived, not counted", archived=True)
    memory_for(alice, "s" * 30, tier="short-term")
    memory_for(bob, "b" * 200)

    _, samples = _scrape(api)

    for tier in ("short-term", "long-term"):
        expected = stored_bytes(alice)[tier] + stored_bytes(bob)[tier]
        assert expected > 0
        assert _value(samples, "kimberly_memory_bytes", tier=tier) == expected


def test_write_counters_count_results_per_tier(api, alice_api):
    _, before = _scrape(api)

    assert _post(alice_api, "one") == 201
    assert _post(alice_api, "two") == 201
    assert _post(alice_api, "three", tier="short-term") == 201
    assert _post(alice_api, "   ") == 400
    assert _post(alice_api, "x" * 70000, tier="permanent") == 413
    _, after = _scrape(api)

    def delta(tier: str, result: str) -> float:
        key = ("kimberly_memory_writes_total", tier, result)
        return _value(after, key[0], tier=tier, result=result) - _value(
            before, key[0], tier=tier, result=result
        )

    assert delta("long-term", "ok") == 2
    assert delta("short-term", "ok") == 1
    assert delta("long-term", "invalid") == 1
    assert delta("permanent", "invalid") == 1
    assert delta("permanent", "ok") == 0


@SMALL_QUOTAS
def test_quota_rejections_are_counted_per_tier(api, alice_api, alice):
    assert _post(alice_api, "a" * 1100) == 201
    _, before = _scrape(api)

    assert _post(alice_api, "b" * 300) == 429
    assert _post(alice_api, "c" * 300) == 429
    assert _post(alice_api, "d" * 300, tier="short-term") == 201
    _, after = _scrape(api)

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta("kimberly_quota_rejections_total", tier="long-term") == 2
    assert delta("kimberly_quota_rejections_total", tier="short-term") == 0
    assert (
        delta("kimberly_memory_writes_total", tier="long-term", result="quota_exceeded")
        == 2
    )
    assert delta("kimberly_memory_writes_total", tier="long-term", result="ok") == 0


def test_memory_metrics_carry_no_user_label(api, alice, alice_api, bob):
    memory_for(alice, "alice's")
    memory_for(bob, "bob's", tier="short-term")
    _post(alice_api, "  ")

    text, samples = _scrape(api)

    names = {name for name, _ in samples}
    assert set(MEMORY_METRICS) <= names
    for name, labels in samples:
        if name.startswith(("kimberly_memory", "kimberly_quota")):
            # bounded enums only (format: an import's file format; threshold: a
            # quota pressure fraction from the settings)
            allowed = {"tier", "status", "result", "format", "threshold"}
            assert {k for k, _ in labels} <= allowed, name
    for who in (alice, bob):
        assert str(who.pk) not in text
        assert who.email not in text
