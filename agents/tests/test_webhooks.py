"""Webhook deliveries against a real HTTP receiver on 127.0.0.1 (allowed with
allow_private=True, as an operator would for a private network), and the
destination policy that refuses everything but public addresses otherwise."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import time
from typing import Any

import pytest
from prometheus_client import REGISTRY

from agents import webhooks
from agents.webhooks import deliver, retry_delays, sign, verify
from kimberly.destinations import (
    InvalidWebhookUrl,
    WebhookRefused,
    WebhookUnresolved,
    check_destination,
)

SECRET = "s3cret-of-alice"
PAYLOAD = {"type": "reminder.due", "reminder_id": 7, "text": "call mom — at 9"}


def _deliver(url: str, **kwargs: Any) -> webhooks.DeliveryResult:
    kwargs.setdefault("allow_private", True)
    kwargs.setdefault("timeout", 5.0)
    return deliver(url, SECRET, PAYLOAD, **kwargs)


def _count(result: str) -> float:
    value = REGISTRY.get_sample_value(
        "kimberly_agent_webhook_deliveries_total", {"result": result}
    )
    return value or 0.0


def test_a_delivery_is_signed_json_the_receiver_can_verify(receiver):
    result = _deliver(receiver.url("/hook"))
    assert (result.ok, result.status_code, result.error) == (True, 204, "")
    [hit] = receiver.hits
    assert json.loads(hit.body) == PAYLOAD
    assert hit.headers["Content-Type"] == "application/json"
    timestamp = hit.headers["X-Kimberly-Timestamp"]
    signature = hit.headers["X-Kimberly-Signature"]
    assert abs(int(timestamp) - time.time()) < 60
    expected = hmac.new(
        SECRET.encode(), f"{timestamp}.".encode() + hit.body, hashlib.sha256
    ).hexdigest()
    assert signature == f"sha256={expected}"
    assert verify(SECRET, hit.body, timestamp=timestamp, signature=signature)


def test_the_signature_check_fails_when_anything_was_changed(receiver):
    _deliver(receiver.url("/hook"))
    [hit] = receiver.hits
    ts, sig = hit.headers["X-Kimberly-Timestamp"], hit.headers["X-Kimberly-Signature"]
    altered = hit.body.replace(b"7", b"8")
    assert altered != hit.body
    assert not verify(SECRET, altered, timestamp=ts, signature=sig)
    assert not verify("another-secret", hit.body, timestamp=ts, signature=sig)
    assert not verify(SECRET, hit.body, timestamp=str(int(ts) + 1), signature=sig)
    assert not verify(SECRET, hit.body, timestamp="soon", signature=sig)


def test_an_old_timestamp_is_refused_as_a_replay():
    body = b'{"a":1}'
    old = int(time.time()) - webhooks.REPLAY_WINDOW_SECONDS - 1
    signature = f"sha256={sign(SECRET, old, body)}"
    assert not verify(SECRET, body, timestamp=str(old), signature=signature)
    assert verify(SECRET, body, timestamp=str(old), signature=signature, now=old + 5)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://127.8.9.10:8443/hook",
        "https://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://0.0.0.0/hook",
        "https://100.64.0.1/hook",
        "https://224.0.0.1/hook",
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://[::ffff:169.254.169.254]/hook",
        "https://[2002:7f00:1::]/hook",
        "https://[64:ff9b::a00:1]/hook",
        "https://[fe80::1]/hook",
        "https://[fd00::1]/hook",
        "https://localhost/hook",
    ],
)
def test_non_public_destinations_are_refused_unless_allowed(url):
    with pytest.raises(WebhookRefused) as caught:
        check_destination(url, allow_private=False)
    assert caught.value.code == "webhook_destination_refused"
    assert check_destination(url, allow_private=True)  # resolves all the same


def test_a_public_address_is_allowed():
    addresses = check_destination("https://93.184.215.14/hook", allow_private=False)
    assert addresses == [ipaddress.ip_address("93.184.215.14")]
    v6 = "https://[2001:4860:4860::8888]:8443/x"
    assert check_destination(v6, allow_private=False)


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.215.14/hook",  # plain http: only with allow_private
        "ftp://93.184.215.14/hook",
        "https:///hook",
        "https://user:pw@93.184.215.14/hook",
        "not a url",
        "https://" + "a" * 2000 + ".example/",
    ],
)
def test_malformed_or_plain_http_urls_are_invalid(url):
    with pytest.raises(InvalidWebhookUrl) as caught:
        check_destination(url, allow_private=False)
    assert caught.value.code == "invalid_webhook_url"


def test_a_host_that_does_not_resolve_is_a_retryable_failure():
    url = "https://no-such-host.invalid/hook"
    with pytest.raises(WebhookUnresolved):
        check_destination(url, allow_private=False)
    result = _deliver(url, allow_private=False)
    assert (result.ok, result.status_code, result.retryable) == (False, None, True)
    assert "does not resolve" in result.error


def test_a_refused_destination_is_never_contacted(receiver):
    before = _count("refused")
    for url in (receiver.url("/hook"), f"https://127.0.0.1:{receiver.port}/hook"):
        result = _deliver(url, allow_private=False)
        assert (result.ok, result.status_code, result.retryable) == (False, None, False)
        assert result.error.startswith("refused")
    assert receiver.hits == []
    assert _count("refused") == before + 2


def test_a_server_error_is_a_retryable_failure(receiver):
    before = _count("failed")
    result = _deliver(receiver.url("/fail"))
    assert (result.ok, result.status_code, result.retryable) == (False, 500, True)
    assert result.error == "HTTP 500"
    assert _count("failed") == before + 1


def test_redirects_are_not_followed(receiver):
    result = _deliver(receiver.url("/redirect"))
    assert (result.ok, result.status_code, result.retryable) == (False, 302, False)
    assert receiver.paths() == ["/redirect"]  # /landing never hit


def test_a_receiver_slower_than_the_timeout_fails_quickly(receiver):
    started = time.monotonic()
    result = _deliver(receiver.url("/slow"), timeout=0.5)
    elapsed = time.monotonic() - started
    assert (result.ok, result.status_code, result.retryable) == (False, None, True)
    assert "no answer within 0.5 s" in result.error
    assert elapsed < 2.0
    assert receiver.paths() == ["/slow"]


def test_an_answer_dripped_slowly_is_cut_at_the_timeout_of_the_whole_attempt(
    receiver,
):
    # Each byte comes well within the timeout; the attempt as a whole does not.
    started = time.monotonic()
    result = _deliver(receiver.url("/drip"), timeout=1.0)
    assert (result.ok, result.status_code, result.retryable) == (False, None, True)
    assert time.monotonic() - started < 2.5


def test_the_connection_goes_to_the_address_that_was_checked(receiver, monkeypatch):
    # A host that "rebinds": the first lookup (the check) says 127.0.0.1, every
    # later one a different address. Only the checked address is ever contacted.
    real = socket.getaddrinfo
    lookups: list[str] = []

    def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "rebind.test":
            lookups.append(host)
            host = "127.0.0.1" if len(lookups) == 1 else "192.0.2.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    result = _deliver(receiver.url("/hook", host="rebind.test"))
    assert result.ok
    assert lookups == ["rebind.test"]
    assert receiver.hits[0].headers["Host"] == f"rebind.test:{receiver.port}"


def test_one_private_address_among_public_ones_refuses_the_host(monkeypatch):
    def mixed(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        stream = (socket.SOCK_STREAM, 6, "")
        return [
            (socket.AF_INET, *stream, ("93.184.215.14", port)),
            (socket.AF_INET, *stream, ("10.0.0.5", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", mixed)
    with pytest.raises(WebhookRefused):
        check_destination("https://mixed.test/hook", allow_private=False)


def test_an_unanswered_address_falls_through_to_the_next(receiver, monkeypatch):
    real = socket.getaddrinfo

    def two(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "two.test":
            return real(host, port, *args, **kwargs)
        # Nothing listens on 127.0.0.2 (the receiver is bound to 127.0.0.1 only).
        first = (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", port))
        return [first, *real("127.0.0.1", port, *args, **kwargs)]

    monkeypatch.setattr(socket, "getaddrinfo", two)
    result = _deliver(receiver.url("/hook", host="two.test"))
    assert result.ok
    assert len(receiver.hits) == 1


def test_retry_delays_grow_by_three_with_bounded_jitter():
    for _ in range(20):
        delays = retry_delays(5)
        assert len(delays) == 4  # pauses between five attempts
        for delay, base in zip(delays, (10, 30, 90, 270), strict=True):
            assert base * 0.8 <= delay <= base * 1.2
    assert retry_delays(1) == []
    assert max(retry_delays(20)) <= webhooks.RETRY_MAX_SECONDS * 1.2
