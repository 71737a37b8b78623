from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_unknown_route_under_v1_is_json_404(api):
    resp = api.get("/v1/does-not-exist/at/all")
    assert resp.status_code == 404
    assert resp.json() == {
        "error": "not_found",
        "message": "No route for /v1/does-not-exist/at/all.",
        "code": 404,
        "details": {},
    }


def test_wrong_method_is_json_405(api):
    resp = api.delete("/v1/health")
    assert resp.status_code == 405
    assert resp.json()["error"] == "method_not_allowed"


def test_wrong_content_type_is_415(api):
    resp = api.generic("POST", "/v1/login", "email=a", content_type="text/plain")
    assert resp.status_code == 415
    assert resp.json()["error"] == "unsupported_media_type"


def test_every_response_carries_a_request_id(api):
    resp = api.get("/v1/health", HTTP_X_REQUEST_ID="req-12345678")
    assert resp["X-Request-ID"] == "req-12345678"
    generated = api.get("/v1/health")["X-Request-ID"]
    assert len(generated) == 32


def test_openapi_schema_and_docs_are_served(api):
    schema = api.get("/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/v1/signup" in paths and "/v1/user" in paths
    docs = api.get("/v1/docs")
    assert docs.status_code == 200
    assert b"swagger" in docs.content.lower()


HUGE = "9" * 400


@pytest.mark.parametrize(
    "path, body",
    [
        ("/v1/memory/query", f'{{"query": "tea", "top_k": {HUGE}}}'),
        (
            "/v1/memory",
            f'{{"type": "long-term", "content": "x", "metadata": {{"tags": [{HUGE}]}}}}',
        ),
        ("/v1/memory/bulk", f'{{"action": "archive", "ids": [{HUGE}]}}'),
        ("/v1/memory/meditate", f'{{"dry_run": {HUGE}}}'),
        ("/v1/user", f'{{"meditation_weights": {{"recency_freq": {HUGE}}}}}'),
    ],
)
def test_integers_beyond_64_bits_in_any_json_body_are_a_400(alice_api, path, body):
    method = "PUT" if path == "/v1/user" else "POST"
    resp = alice_api.generic(method, path, body, content_type="application/json")
    assert resp.status_code == 400
    assert resp.json()["error"] == "malformed_request"
    assert HUGE not in resp.content.decode()


@pytest.mark.parametrize(
    "path",
    [
        f"/v1/memory?page={HUGE}",
        f"/v1/audit/logs?page={HUGE}",
        f"/v1/memory/meditations?page={HUGE}",
        f"/v1/memory/forecast?page={HUGE}",
        f"/v1/memory?per_page={HUGE}",
    ],
)
def test_page_numbers_beyond_64_bits_are_a_400(alice_api, path):
    resp = alice_api.get(path)
    assert resp.status_code == 400
    assert resp.json()["error"] == "validation_error"


@pytest.mark.parametrize(
    "path", [f"/v1/goals/{HUGE}", f"/v1/memory/meditations/{HUGE}"]
)
def test_ids_beyond_64_bits_in_a_path_are_a_404(alice_api, path):
    method = "DELETE" if "goals" in path else "GET"
    resp = alice_api.generic(method, path)
    assert resp.status_code == 404
