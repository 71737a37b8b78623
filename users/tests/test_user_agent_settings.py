"""The settings the agents need, through PUT /v1/user: the user's time zone and
their webhook (a URL the destination policy allows, and its secret, shown once)."""

from __future__ import annotations

import pytest
from django.test import override_settings

from audit.models import AuditEvent

pytestmark = pytest.mark.django_db

PUBLIC_URL = "https://93.184.215.14/hooks/kimberly?token=abc"


def _put(api, **body):
    return api.put("/v1/user", body, format="json")


def test_a_new_user_is_in_utc_without_a_webhook(alice_api):
    body = alice_api.get("/v1/user").json()
    assert body["time_zone"] == "UTC"
    assert body["webhook_url"] == ""
    assert "webhook_secret" not in body


def test_user_sets_an_iana_time_zone(alice_api, alice):
    resp = _put(alice_api, time_zone="Europe/Paris")
    assert resp.status_code == 200
    assert resp.json()["time_zone"] == "Europe/Paris"
    alice.refresh_from_db()
    assert alice.time_zone == "Europe/Paris"


@pytest.mark.parametrize(
    "name", ["Mars/Olympus_Mons", "europe/paris", "../../etc/passwd", "", "+02:00"]
)
def test_an_unknown_time_zone_is_400_and_changes_nothing(alice_api, alice, name):
    resp = _put(alice_api, time_zone=name, memory_auto_accept=True)
    assert resp.status_code == 400
    body = resp.json()
    if name:  # an empty string is refused by the serializer already
        assert body["error"] == "invalid_time_zone"
    assert "time_zone" in body["details"]["fields"]
    alice.refresh_from_db()
    assert (alice.time_zone, alice.memory_auto_accept) == ("UTC", False)


def test_setting_a_webhook_shows_its_secret_once(alice_api, alice):
    resp = _put(alice_api, webhook_url=PUBLIC_URL)
    assert resp.status_code == 200
    body = resp.json()
    assert body["webhook_url"] == PUBLIC_URL
    secret = body["webhook_secret"]
    assert len(secret) >= 40
    alice.refresh_from_db()
    assert alice.webhook_secret == secret
    again = alice_api.get("/v1/user").json()
    assert again["webhook_url"] == PUBLIC_URL
    assert "webhook_secret" not in again
    assert secret not in str(again)


def test_the_same_url_again_keeps_the_secret_and_rotating_replaces_it(alice_api, alice):
    first = _put(alice_api, webhook_url=PUBLIC_URL).json()["webhook_secret"]
    same = _put(alice_api, webhook_url=PUBLIC_URL, time_zone="Asia/Tokyo").json()
    assert "webhook_secret" not in same
    alice.refresh_from_db()
    assert alice.webhook_secret == first
    rotated = _put(alice_api, rotate_webhook_secret=True).json()["webhook_secret"]
    assert rotated != first
    moved = _put(alice_api, webhook_url="https://93.184.215.15/other").json()
    assert moved["webhook_secret"] not in (first, rotated)


def test_an_empty_url_removes_the_webhook_and_its_secret(alice_api, alice):
    _put(alice_api, webhook_url=PUBLIC_URL)
    resp = _put(alice_api, webhook_url="")
    assert resp.status_code == 200
    assert resp.json()["webhook_url"] == ""
    alice.refresh_from_db()
    assert (alice.webhook_url, alice.webhook_secret) == ("", "")
    rotate = _put(alice_api, rotate_webhook_secret=True)
    assert rotate.status_code == 400
    assert "rotate_webhook_secret" in rotate.json()["details"]["fields"]


@pytest.mark.parametrize(
    "url",
    ["http://93.184.215.14/hook", "ftp://93.184.215.14/", "hooks.example.com/x"],
)
def test_a_url_that_is_not_https_is_400_invalid_webhook_url(alice_api, alice, url):
    resp = _put(alice_api, webhook_url=url)
    assert resp.status_code == 400
    body = resp.json()
    assert body["error"] == "invalid_webhook_url"
    assert list(body["details"]["fields"]) == ["webhook_url"]
    alice.refresh_from_db()
    assert alice.webhook_url == ""


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://localhost:8443/hook",
        "https://10.0.0.8/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
    ],
)
def test_a_private_or_loopback_destination_is_refused_at_set_time(
    alice_api, alice, url
):
    resp = _put(alice_api, webhook_url=url, time_zone="Europe/Berlin")
    assert resp.status_code == 400
    body = resp.json()
    assert body["error"] == "webhook_destination_refused"
    assert "webhook_url" in body["details"]["fields"]
    alice.refresh_from_db()
    assert (alice.webhook_url, alice.webhook_secret, alice.time_zone) == ("", "", "UTC")


@override_settings(AGENT_WEBHOOK_ALLOW_PRIVATE=True)
def test_private_destinations_and_http_are_allowed_when_the_operator_allows_them(
    alice_api, alice
):
    for url in ("http://127.0.0.1:8080/hook", "https://10.0.0.8/hook"):
        resp = _put(alice_api, webhook_url=url)
        assert resp.status_code == 200, resp.json()
        assert resp.json()["webhook_url"] == url
    alice.refresh_from_db()
    assert alice.webhook_url == "https://10.0.0.8/hook"


def test_changes_are_audited_without_the_secret_or_the_urls_path(alice_api, alice):
    secret = _put(
        alice_api, webhook_url=PUBLIC_URL, time_zone="America/New_York"
    ).json()["webhook_secret"]
    event = AuditEvent.objects.filter(user_id=alice.pk, action="settings.change").get()
    assert event.details == {
        "time_zone": "America/New_York",
        "webhook_url": "93.184.215.14",
        "webhook_secret": "generated",
    }
    assert secret not in str(event.details)
    assert "token" not in str(event.details)


def test_bob_cannot_see_alices_webhook(alice_api, bob_api):
    secret = _put(alice_api, webhook_url=PUBLIC_URL).json()["webhook_secret"]
    body = bob_api.get("/v1/user").json()
    assert body["email"] == "bob@example.com"
    assert body["webhook_url"] == ""
    assert secret not in str(body)
    assert PUBLIC_URL not in str(bob_api.put("/v1/user", {}, format="json").json())
