"""Per-IP rate limits behind proxies: each client its own bucket, no spoofing."""

from __future__ import annotations

import ipaddress

import pytest
from django.test import override_settings

pytestmark = pytest.mark.django_db

TRAEFIK = "10.42.0.9"  # a k3s pod address (cluster CIDR 10.42.0.0/16)
PROXIES = [ipaddress.ip_network("10.42.0.0/16")]


def _login(api, **meta):
    return api.post(
        "/v1/login",
        {"email": "nobody@example.com", "password": "wrong"},
        format="json",
        **meta,
    )


def _exhaust(api, **meta) -> None:
    for _ in range(3):
        assert _login(api, **meta).status_code == 401
    assert _login(api, **meta).status_code == 429


@override_settings(
    LOGIN_RATE_PER_IP=3, LOGIN_RATE_PER_EMAIL=100, TRUSTED_PROXIES=PROXIES
)
def test_clients_behind_the_ingress_have_their_own_login_buckets(api):
    _exhaust(api, REMOTE_ADDR=TRAEFIK, HTTP_X_FORWARDED_FOR="203.0.113.5")
    # Another client through the same ingress pod is not throttled.
    resp = _login(api, REMOTE_ADDR=TRAEFIK, HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert resp.status_code == 401


@override_settings(
    LOGIN_RATE_PER_IP=3, LOGIN_RATE_PER_EMAIL=100, TRUSTED_PROXIES=PROXIES
)
def test_a_client_cannot_escape_its_bucket_by_prepending_forwarded_addresses(api):
    # The ingress appends the address it saw; what the client wrote is on the left.
    for fake in ("1.1.1.1", "2.2.2.2", "3.3.3.3"):
        xff = f"{fake}, 203.0.113.5"
        resp = _login(api, REMOTE_ADDR=TRAEFIK, HTTP_X_FORWARDED_FOR=xff)
        assert resp.status_code == 401
    xff = "4.4.4.4, 203.0.113.5"
    resp = _login(api, REMOTE_ADDR=TRAEFIK, HTTP_X_FORWARDED_FOR=xff)
    assert resp.status_code == 429


@override_settings(
    LOGIN_RATE_PER_IP=3,
    LOGIN_RATE_PER_EMAIL=100,
    TRUSTED_PROXIES=[ipaddress.ip_network("172.16.0.0/12")],
    CLIENT_IP_HEADER="HTTP_FLY_CLIENT_IP",
)
def test_forwarding_headers_from_an_untrusted_peer_are_ignored(api):
    """A client that reaches the app directly cannot pick a fresh bucket."""
    for i in range(3):
        fake = f"198.51.100.{i}"
        meta = {"HTTP_FLY_CLIENT_IP": fake, "HTTP_X_FORWARDED_FOR": fake}
        assert _login(api, REMOTE_ADDR="192.0.2.1", **meta).status_code == 401
    meta = {"HTTP_FLY_CLIENT_IP": "198.51.100.99"}
    assert _login(api, REMOTE_ADDR="192.0.2.1", **meta).status_code == 429
    # Through Fly's proxy the header names the client.
    assert (
        _login(
            api, REMOTE_ADDR="172.16.3.4", HTTP_FLY_CLIENT_IP="192.0.2.1"
        ).status_code
        == 429
    )
    assert (
        _login(
            api, REMOTE_ADDR="172.16.3.4", HTTP_FLY_CLIENT_IP="192.0.2.2"
        ).status_code
        == 401
    )


def test_a_trusted_proxy_seen_as_an_ipv4_mapped_address_is_still_trusted(settings):
    import ipaddress

    from kimberly.api.ratelimit import client_ip

    settings.TRUSTED_PROXIES = [ipaddress.ip_network("10.42.0.0/16")]
    settings.CLIENT_IP_HEADER = ""
    meta = {"REMOTE_ADDR": "::ffff:10.42.0.5", "HTTP_X_FORWARDED_FOR": "203.0.113.9"}
    assert client_ip(meta) == "203.0.113.9"
