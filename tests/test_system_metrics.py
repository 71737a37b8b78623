"""The gauges the alert rules read at scrape time: PostgreSQL, the broker's queues,
quota pressure and the nightly meditation run, on the web's /metrics."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.db.utils import ConnectionHandler
from django.test import override_settings
from django.utils import timezone
from kombu import Queue
from prometheus_client.parser import text_string_to_metric_families

from kimberly.celery import app as celery_app
from kimberly.runtime import common
from kimberly.system_metrics import (
    BrokerCollector,
    PostgresCollector,
    celery_queue_names,
)
from memory.metrics import MemoryStoreCollector, QuotaPressureCollector
from memory.models import MeditationRun, Quota
from users.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

QUOTAS = override_settings(
    MEMORY_QUOTA_DEFAULTS={"short-term": 1000, "long-term": 1000, "permanent": 1000}
)


def _scrape(api: Any) -> dict[tuple[str, frozenset[Any]], float]:
    from django.core.cache import cache

    cache.delete_many(
        [MemoryStoreCollector.CACHE_KEY, QuotaPressureCollector.CACHE_KEY]
    )
    resp = api.get("/metrics")
    assert resp.status_code == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(resp.content.decode())
        for s in family.samples
    }


def _value(
    samples: dict[tuple[str, frozenset[Any]], float], name: str, **labels: str
) -> float:
    return samples[(name, frozenset(labels.items()))]


def _collect(collector: Any) -> dict[tuple[str, frozenset[Any]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in collector.collect()
        for s in family.samples
    }


def test_postgres_gauges_describe_the_server(api):
    samples = _scrape(api)

    assert _value(samples, "kimberly_postgres_up") == 1
    with connection.cursor() as cur:
        cur.execute(
            "SELECT pg_database_size(current_database()), "
            "current_setting('max_connections')::int"
        )
        size, max_conn = cur.fetchone()
    # the size moves as the test writes; the same order of magnitude is enough
    assert (
        size / 2 < _value(samples, "kimberly_postgres_database_size_bytes") < size * 2
    )
    assert _value(samples, "kimberly_postgres_max_connections") == max_conn
    # this test's own connection is a client connection of the server
    conns = {
        dict(labels)["state"]: v
        for (name, labels), v in samples.items()
        if name == "kimberly_postgres_connections"
    }
    assert sum(conns.values()) >= 1
    assert set(conns) <= {
        "active",
        "idle",
        "idle in transaction",
        "idle in transaction (aborted)",
        "fastpath function call",
        "disabled",
        "unknown",
    }
    # the embedded server has no replica and is no standby
    assert _value(samples, "kimberly_postgres_replication_lag_seconds") == 0
    # no capacity configured: no ratio (the storage alerts cannot guess it)
    assert not any(n == "kimberly_postgres_storage_used_ratio" for n, _ in samples)


def test_the_storage_ratio_is_the_size_over_the_configured_capacity(api):
    with override_settings(POSTGRES_STORAGE_BYTES=10 * 2**30):
        samples = _scrape(api)
    ratio = _value(samples, "kimberly_postgres_storage_used_ratio")
    size = _value(samples, "kimberly_postgres_database_size_bytes")
    assert ratio == pytest.approx(size / (10 * 2**30), rel=0.05)


def test_a_postgres_that_does_not_answer_reads_as_down_without_raising():
    dead = {
        **settings.DATABASES["default"],
        "HOST": "127.0.0.1",
        "PORT": str(common.free_port()),
    }
    handler = ConnectionHandler({"default": dead})
    try:
        samples = _collect(PostgresCollector(handler["default"]))
    finally:
        handler.close_all()
    assert samples == {("kimberly_postgres_up", frozenset()): 0}


@pytest.mark.django_db(transaction=True)
def test_metrics_still_answers_with_postgres_down(api):
    """The web's own connection refused: /metrics says so and still serves the
    process metrics and the broker's gauges (the store gauges are left out)."""
    connection.close()
    port = connection.settings_dict["PORT"]
    connection.settings_dict["PORT"] = str(common.free_port())
    try:
        samples = _scrape(api)
    finally:
        connection.close()
        connection.settings_dict["PORT"] = port
    assert _value(samples, "kimberly_postgres_up") == 0
    assert _value(samples, "kimberly_redis_up") == 1
    names = {n for n, _ in samples}
    assert "kimberly_memory_items" not in names
    assert any(n.startswith("django_http_") for n in names)


def _purge(queues: list[str]) -> None:
    """Empty every queue (control.purge() empties only the default one)."""
    with celery_app.connection_for_write() as conn:
        for queue in queues:
            Queue(queue, channel=conn.default_channel).purge()


def test_queue_depth_counts_the_waiting_messages_of_every_configured_queue(api):
    queues = celery_queue_names()
    assert settings.AGENT_QUEUE in queues and "celery" in queues
    _purge(queues)
    try:
        for _ in range(3):
            celery_app.send_task("tests.worker_probe.bump")
        for _ in range(2):
            celery_app.send_task("tests.worker_probe.bump", queue=settings.AGENT_QUEUE)
        celery_app.send_task("tests.worker_probe.bump", priority=6)
        samples = _scrape(api)
    finally:
        _purge(queues)
    assert _value(samples, "kimberly_redis_up") == 1
    assert _value(samples, "kimberly_celery_queue_depth", queue="celery") == 4
    assert (
        _value(samples, "kimberly_celery_queue_depth", queue=settings.AGENT_QUEUE) == 2
    )
    assert _value(samples, "kimberly_redis_memory_used_bytes") > 0
    assert _value(samples, "kimberly_redis_connected_clients") >= 1
    after = _scrape(api)
    assert _value(after, "kimberly_celery_queue_depth", queue="celery") == 0


def test_queue_names_come_from_the_settings():
    routes = {"a.task": {"queue": "embedding"}, "b.task": "meditation"}
    with override_settings(CELERY_TASK_ROUTES=routes):
        assert celery_queue_names() == ["celery", "embedding", "meditation"]
    with override_settings(CELERY_TASK_ROUTES=[routes, {"c.task": {"queue": "x"}}]):
        assert celery_queue_names() == ["celery", "embedding", "meditation", "x"]
    beat = {"nightly": {"task": "t", "options": {"queue": "night"}}}
    with override_settings(CELERY_TASK_ROUTES={}, CELERY_BEAT_SCHEDULE=beat):
        assert celery_queue_names() == ["celery", "night"]


def test_a_broker_that_does_not_answer_reads_as_down_without_raising():
    samples = _collect(BrokerCollector(f"redis://127.0.0.1:{common.free_port()}/0"))
    assert samples == {("kimberly_redis_up", frozenset()): 0}


def _use(user: Any, tier: str, used: int) -> None:
    Quota.objects.update_or_create(user=user, tier=tier, defaults={"used_bytes": used})


@QUOTAS
def test_quota_pressure_counts_users_with_any_tier_over_each_threshold(api, alice, bob):
    carol: Any = UserFactory()
    dave: Any = UserFactory()
    _use(alice, "long-term", 950)  # over 90%
    _use(alice, "short-term", 850)  # same user: counted once
    _use(bob, "permanent", 800)  # exactly 80%: counted at 0.8
    _use(carol, "long-term", 799)  # below both
    _use(dave, "long-term", 100)
    Quota.objects.filter(user=dave, tier="long-term").update(limit_bytes=110)  # 91%

    samples = _scrape(api)

    assert _value(samples, "kimberly_quota_pressure_users", threshold="0.8") == 3
    assert _value(samples, "kimberly_quota_pressure_users", threshold="0.9") == 2
    names = [labels for n, labels in samples if n == "kimberly_quota_pressure_users"]
    assert all(dict(labels).keys() == {"threshold"} for labels in names)


def test_quota_pressure_is_zero_with_no_one_near_a_limit(api, alice):
    _use(alice, "long-term", 1)
    samples = _scrape(api)
    assert _value(samples, "kimberly_quota_pressure_users", threshold="0.8") == 0
    assert _value(samples, "kimberly_quota_pressure_users", threshold="0.9") == 0


def _nightly(**fields: Any) -> MeditationRun:
    return MeditationRun.objects.create(
        scope="all", scoring_version="t", weights={}, as_of=timezone.now(), **fields
    )


@override_settings(MEDITATION_WINDOW_SECONDS=900)
def test_the_latest_nightly_run_is_measured_against_the_window(api):
    samples = _scrape(api)
    assert _value(samples, "kimberly_meditation_window_seconds") == 900
    assert not any(n == "kimberly_meditation_latest_all_seconds" for n, _ in samples)

    done = _nightly(status="done", duration_ms=42_000)
    MeditationRun.objects.filter(pk=done.pk).update(
        started_at=timezone.now() - timedelta(hours=25)
    )
    assert _value(_scrape(api), "kimberly_meditation_latest_all_seconds") == 42

    _nightly(status="done", duration_ms=1, dry_run=True)  # dry runs do not count
    assert _value(_scrape(api), "kimberly_meditation_latest_all_seconds") == 42

    running = _nightly()  # still queued: its age so far
    MeditationRun.objects.filter(pk=running.pk).update(
        started_at=timezone.now() - timedelta(minutes=20)
    )
    assert _value(_scrape(api), "kimberly_meditation_latest_all_seconds") >= 1200


@pytest.mark.django_db
def test_with_a_scrape_token_metrics_need_it(api):
    with override_settings(METRICS_TOKEN="s3cret-scrape"):
        assert api.get("/metrics").status_code == 401
        wrong = api.get("/metrics", HTTP_AUTHORIZATION="Bearer nope")
        assert wrong.status_code == 401
        right = api.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape")
        assert right.status_code == 200 and b"kimberly_postgres_up" in right.content
    assert api.get("/metrics").status_code == 200  # no token set: open
