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


def test_ready_is_503_naming_redis_and_broker_while_valkey_is_down(api):
    port = runtime.valkey_port()
    if port is None:
        pytest.skip(
            "Valkey is external (REDIS_URL set): this test stops the embedded one"
        )
    runtime.stop_valkey()
    try:
        assert runtime.valkey_port() is None
        resp = api.get("/v1/health/ready")
        assert resp.status_code == 503
        body = resp.json()
        assert body["error"] == "not_ready"
        assert body["code"] == 503
        assert set(body["details"]["failed"]) == {"redis", "broker"}
        assert body["details"]["checks"]["database"]["ok"] is True
    finally:
        runtime.start_valkey(port=port)
    assert api.get("/v1/health/ready").status_code == 200
