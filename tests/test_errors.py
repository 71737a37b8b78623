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
