from __future__ import annotations

import pytest

from kimberly import runtime

pytestmark = pytest.mark.django_db


def test_health_answers_without_auth(api):
    resp = api.get("/v1/health")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ok"
    assert body["uptime_seconds"] >= 0


def test_ready_is_200_when_every_store_answers(api):
    resp = api.get("/v1/health/ready")
    assert resp.status_code == 200
    checks = resp.json()["checks"]
    assert set(checks) == {"database", "redis", "broker", "storage"}
    assert all(c["ok"] for c in checks.values())


def test_ready_stays_200_and_reports_degraded_while_valkey_is_down(api):
    """Redis and the broker are optional: a blip must not take every pod out."""
    port = runtime.valkey_port()
    if port is None:
        pytest.skip(
            "Valkey is external (REDIS_URL set): this test stops the embedded one"
        )
    runtime.stop_valkey()
    try:
        assert runtime.valkey_port() is None
        resp = api.get("/v1/health/ready")
        assert resp.status_code == 200
        body = resp.json()
        assert body["status"] == "degraded"
        assert set(body["degraded"]) == {"redis", "broker"}
        assert body["checks"]["database"]["ok"] is True
        assert body["checks"]["redis"]["ok"] is False
    finally:
        runtime.start_valkey(port=port)
    assert api.get("/v1/health/ready").json()["status"] == "ok"


def test_ready_is_503_while_a_migration_of_this_code_is_missing(api, monkeypatch):
    from django.db import connection

    from kimberly import health

    monkeypatch.setattr(health._Migrations, "applied", False)
    with connection.cursor() as cur:  # rolled back with the test's transaction
        cur.execute(
            "DELETE FROM django_migrations WHERE id = "
            "(SELECT max(id) FROM django_migrations WHERE app = 'memory')"
        )
    resp = api.get("/v1/health/ready")
    assert resp.status_code == 503
    assert resp.json()["details"]["failed"] == ["database"]


def test_a_store_that_hangs_is_reported_timed_out_and_ready_stays_200(api, monkeypatch):
    import threading

    from kimberly import health

    release = threading.Event()

    def hangs() -> None:
        release.wait(30)  # a blackholed broker: no answer, no error

    # Warm up first: a process's first S3 and broker checks build their clients,
    # which on a loaded machine can take longer than the short deadline below.
    assert api.get("/v1/health/ready").json()["status"] == "ok"
    monkeypatch.setitem(health.CHECKS, "broker", (hangs, False))
    monkeypatch.setattr(health, "OPTIONAL_DEADLINE_SECONDS", 2.0, raising=False)
    try:
        resp = api.get("/v1/health/ready")
    finally:
        release.set()
    body = resp.json()
    assert resp.status_code == 200 and body["status"] == "degraded"
    assert body["degraded"] == ["broker"]
    assert body["checks"]["broker"]["error"] == "TimeoutError"


def test_a_hung_store_is_checked_once_at_a_time_and_does_not_starve_the_others(
    api, monkeypatch
):
    import threading

    from kimberly import health

    release = threading.Event()
    calls: list[int] = []

    def hangs() -> None:
        calls.append(1)
        release.wait(30)

    assert api.get("/v1/health/ready").json()["status"] == "ok"  # warm (see above)
    monkeypatch.setitem(health.CHECKS, "storage", (hangs, False))
    monkeypatch.setattr(health, "OPTIONAL_DEADLINE_SECONDS", 1.0)
    try:
        bodies = [
            api.get("/v1/health/ready").json()
            for _ in range(health._pool._max_workers + 1)
        ]
    finally:
        release.set()
    assert len(calls) == 1, "a check still running is waited on, not queued again"
    assert all(b["degraded"] == ["storage"] for b in bodies), "redis and broker ok"


@pytest.mark.django_db(transaction=True)
def test_with_postgres_down_liveness_answers_and_readiness_says_503(api):
    """The probes get no row-level-security frame (opening one is a query):
    a database outage makes the pods unready, not restarted for failing liveness."""
    from django.db import connection

    from kimberly.runtime import common

    connection.close()
    port = connection.settings_dict["PORT"]
    connection.settings_dict["PORT"] = str(common.free_port())
    try:
        live = api.get("/v1/health")
        ready = api.get("/v1/health/ready")
    finally:
        connection.close()
        connection.settings_dict["PORT"] = port
    assert live.status_code == 200
    assert ready.status_code == 503
    assert ready.json()["error"] == "not_ready"
    assert "database" in ready.json()["details"]["failed"]
