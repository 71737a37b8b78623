"""API rate limits (kimberly/api/throttle.py): per user and per client IP, per
endpoint group, counted in the real Valkey; 429 rate_limited with Retry-After.

The suite runs with limits far above what it sends (kimberly.settings.test);
these tests set small ones per group with the `settings` fixture.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.urls import URLPattern, URLResolver, get_resolver
from django_redis import get_redis_connection
from prometheus_client import REGISTRY
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from kimberly.api.ratelimit import api_rate_limit_keys
from kimberly.api.throttle import ApiRateThrottle, route_group
from kimberly.runtime import common

pytestmark = pytest.mark.django_db


def _limit(settings: Any, group: str, *, user: int, ip: int, window: int = 60) -> None:
    settings.RATE_LIMITS = {
        **settings.RATE_LIMITS,
        group: {"user": user, "ip": ip, "window": window},
    }


def _assert_limited(resp: Any, group: str, by: str) -> None:
    assert resp.status_code == 429, resp.content
    body = resp.json()
    assert body["error"] == "rate_limited"
    assert (body["details"]["group"], body["details"]["by"]) == (group, by)
    assert 1 <= int(resp["Retry-After"]) <= body["details"]["window_seconds"]
    assert body["details"]["retry_after"] == int(resp["Retry-After"])


def test_past_the_per_user_limit_is_429_and_other_users_and_groups_are_not(
    settings, alice_api, bob_api
):
    _limit(settings, "memory_read", user=3, ip=100)
    labels = {"group": "memory_read", "by": "user"}
    before = REGISTRY.get_sample_value("kimberly_rate_limited_total", labels) or 0
    for _ in range(3):
        assert alice_api.get("/v1/memory").status_code == 200
    # any route of the group counts: a memory read, the metrics
    _assert_limited(alice_api.get("/v1/memory/metrics"), "memory_read", "user")
    assert REGISTRY.get_sample_value("kimberly_rate_limited_total", labels) == (
        before + 1
    )
    # bob, from the same address, is under both of his limits
    assert bob_api.get("/v1/memory").status_code == 200
    # alice's other groups have their own counters
    resp = alice_api.post("/v1/memory/query", {"query": "anything"}, format="json")
    assert resp.status_code == 200
    assert alice_api.get("/v1/user").status_code == 200


def test_the_per_ip_limit_counts_every_user_from_that_address(
    settings, alice_api, bob_api
):
    _limit(settings, "memory_write", user=100, ip=3)
    goal = {"text": "learn Spanish"}
    for client in (alice_api, alice_api, bob_api):
        assert client.post("/v1/goals", goal, format="json").status_code == 201
    _assert_limited(
        bob_api.post("/v1/goals", goal, format="json"), "memory_write", "ip"
    )
    # reads are another group; another address has its own count
    assert bob_api.get("/v1/goals").status_code == 200
    resp = bob_api.post("/v1/goals", goal, format="json", REMOTE_ADDR="10.0.0.9")
    assert resp.status_code == 201


def test_the_limit_resets_when_its_window_ends(settings, alice_api):
    _limit(settings, "user", user=1, ip=100, window=1)
    assert alice_api.get("/v1/user").status_code == 200
    resp = alice_api.get("/v1/user")
    _assert_limited(resp, "user", "user")
    time.sleep(int(resp["Retry-After"]) + 0.2)
    assert alice_api.get("/v1/user").status_code == 200


def test_the_counters_are_in_redis_under_hashed_keys_erasure_can_name(
    settings, alice, alice_api
):
    assert alice_api.get("/v1/audit/logs").status_code == 200
    keys = {k.decode() for k in get_redis_connection("default").keys("kb:rl:api:*")}
    assert len(keys) == 2  # one for alice, one for 127.0.0.1
    assert set(api_rate_limit_keys(str(alice.pk))) & keys
    assert not any(str(alice.pk) in k or "127.0.0.1" in k for k in keys)
    ttl = get_redis_connection("default").ttl(next(iter(keys)))
    assert 0 < ttl <= settings.RATE_LIMITS["audit"]["window"]


def test_anonymous_requests_and_open_endpoints_are_not_counted(settings, api):
    _limit(settings, "memory_read", user=1, ip=1)
    for _ in range(3):
        assert api.get("/v1/memory").status_code == 401
        assert api.get("/v1/health").status_code == 200
    assert get_redis_connection("default").keys("kb:rl:api:*") == []


def test_turned_off_nothing_is_counted(settings, alice_api):
    settings.RATE_LIMIT_ENABLED = False
    _limit(settings, "agents", user=1, ip=1)
    for _ in range(3):
        assert alice_api.get("/v1/agents/tasks").status_code == 200


@pytest.fixture
def dead_redis(settings: Any) -> Iterator[None]:
    """The cache (and so the rate limiter) pointed at a closed loopback port."""
    port = common.free_port()
    default = settings.CACHES["default"]
    settings.CACHES = {
        "default": {**default, "LOCATION": f"redis://127.0.0.1:{port}/14"}
    }
    yield


def test_with_redis_down_requests_pass_and_a_warning_is_logged(
    settings, alice_api, dead_redis, caplog
):
    _limit(settings, "user", user=1, ip=1)
    for _ in range(2):
        assert alice_api.get("/v1/user").status_code == 200
    assert "rate limiter unavailable" in caplog.text


# --- every authenticated endpoint is covered ---------------------------------


def _routes(
    patterns: list[URLPattern | URLResolver], prefix: str = ""
) -> Iterator[tuple[str, URLPattern]]:
    for entry in patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _routes(entry.url_patterns, route)
        else:
            yield route, entry


def _authenticated_api_routes() -> list[tuple[str, type[APIView], dict[str, Any]]]:
    found = []
    for route, entry in _routes(get_resolver().url_patterns):
        view = getattr(entry.callback, "view_class", None)
        if view is None or not issubclass(view, APIView):
            continue  # the admin (sessions) and /metrics are not the API
        if all(issubclass(p, AllowAny) for p in view.permission_classes):
            continue  # health, login, signup: open, with limits of their own
        found.append((route, view, getattr(entry.callback, "view_initkwargs", {})))
    return found


def test_every_authenticated_route_and_method_has_a_rate_limit_group(settings):
    routes = _authenticated_api_routes()
    assert len(routes) > 40  # the walk found the API
    missing = []
    for route, view, initkwargs in routes:
        throttles = view(**initkwargs).get_throttles()
        assert any(isinstance(t, ApiRateThrottle) for t in throttles), route
        for method in view.http_method_names:
            if hasattr(view, method):
                group = route_group(route, method)
                if group is None:
                    missing.append(f"{method.upper()} {route}")
                else:
                    assert group in settings.RATE_LIMITS
    assert missing == [], "give these a group in kimberly/api/throttle.py"


def test_the_group_rules_read_methods_and_refuse_unknown_routes():
    assert route_group("v1/memory/<str:memory_id>", "GET") == "memory_read"
    assert route_group("v1/memory/<str:memory_id>", "PATCH") == "memory_write"
    assert route_group("v1/memory/query", "POST") == "query"
    assert route_group("v1/user/consents/<str:purpose>", "DELETE") == "user"
    assert route_group("v1/compliance/check", "GET") == "user"
    assert route_group("v1/memoryx", "GET") is None
    assert route_group("v1/billing/invoices", "GET") is None


def test_an_unauthenticated_user_object_is_let_through():
    class Request:
        user = AnonymousUser()

    assert ApiRateThrottle().allow_request(Request(), None) is True


def test_every_authenticated_operation_documents_429_with_retry_after(api):
    schema = api.get("/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    operations = [
        (f"{method.upper()} {path}", op)
        for path, item in schema.json()["paths"].items()
        for method, op in item.items()
        if any(op.get("security", []))
    ]
    assert len(operations) > 40
    for name, op in operations:
        response = op["responses"].get("429")
        assert response is not None, name
        assert "rate_limited" in response["description"], name
        assert "Retry-After" in response.get("headers", {}), name
