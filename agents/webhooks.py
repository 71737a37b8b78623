"""Outgoing webhooks (the reminder agent's): signing, the destination policy, and
one delivery attempt. Pure of the task framework: the caller owns retries.

A user's URL points wherever they like, so every delivery first resolves the
host and refuses it when any address is not public unicast (the machine's own
services, the private network, 169.254.169.254), unless the operator allows
private destinations. The connection then goes to the very address that was
checked: the network backend below ignores any later answer of DNS (a host that
rebinds from a public address to 127.0.0.1 between check and connect gets
nowhere), while TLS still verifies the certificate against the URL's host name.
Redirects are never followed (httpcore has no redirect logic at all), proxies
from the environment are not used, and one deadline bounds the whole attempt.

Receivers verify `X-Kimberly-Signature: sha256=<hex>`, the HMAC-SHA256 with the
user's webhook secret of `<X-Kimberly-Timestamp>.` followed by the raw body, and
refuse timestamps older than REPLAY_WINDOW_SECONDS (see `verify`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpcore2

from agents import metrics
from kimberly.destinations import (
    Destination,
    InvalidWebhookUrl,
    WebhookRefused,
    WebhookUnresolved,
    destination,
)

TIMESTAMP_HEADER = "X-Kimberly-Timestamp"
SIGNATURE_HEADER = "X-Kimberly-Signature"
USER_AGENT = "Kimberly-Webhooks/1"
# How old a delivery's timestamp may be when the receiver checks it.
REPLAY_WINDOW_SECONDS = 300

RETRY_BASE_SECONDS = 10
RETRY_FACTOR = 3
RETRY_JITTER = 0.2  # each pause moves by up to ±20 %
RETRY_MAX_SECONDS = 3600


@dataclass(frozen=True)
class DeliveryResult:
    """One attempt's outcome. `retryable`: a later attempt may fare better (a
    timeout, a network error, 408, 429, 5xx); never for a refused destination."""

    status_code: int | None
    ok: bool
    error: str
    retryable: bool = False
    refused: bool = False  # the destination policy refused it: never contacted


# --- Signing ---------------------------------------------------------------------


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of `<timestamp>.` + body with the user's secret."""
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_headers(secret: str, body: bytes, *, timestamp: int) -> dict[str, str]:
    return {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: f"sha256={sign(secret, timestamp, body)}",
    }


def verify(
    secret: str,
    body: bytes,
    *,
    timestamp: str,
    signature: str,
    now: float | None = None,
    tolerance: int = REPLAY_WINDOW_SECONDS,
) -> bool:
    """What a receiver does with the two headers: the signature must match the raw
    body and the timestamp, and the timestamp be within `tolerance` seconds."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - sent) > tolerance:
        return False
    return hmac.compare_digest(f"sha256={sign(secret, sent, body)}", signature)


# --- Delivery --------------------------------------------------------------------


class _DeadlineStream(httpcore2.NetworkStream):
    """Every read and write waits at most until the attempt's deadline, so a
    receiver that drips its answer a byte at a time cannot hold a worker."""

    def __init__(self, inner: httpcore2.NetworkStream, deadline: float) -> None:
        self._inner = inner
        self._deadline = deadline

    def _left(self, timeout: float | None, error: type[Exception]) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise error("the attempt's time is up")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._left(timeout, httpcore2.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._left(timeout, httpcore2.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.NetworkStream:
        left = self._left(timeout, httpcore2.ConnectTimeout)
        tls = self._inner.start_tls(ssl_context, server_hostname, left)
        return _DeadlineStream(tls, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _PinnedBackend(httpcore2.NetworkBackend):
    """Connects to the checked addresses of the one expected host, never to what
    the resolver might say now, and never to another host."""

    def __init__(self, destination: Destination, deadline: float) -> None:
        self._destination = destination
        self._deadline = deadline
        self._sockets = httpcore2.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        dest = self._destination
        if (host, port) != (dest.host, dest.port):
            raise httpcore2.ConnectError(f"{host}:{port} is not the checked host")
        failure: Exception = httpcore2.ConnectError("no address to connect to")
        for ip in dest.addresses:  # the next address when one does not answer
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise httpcore2.ConnectTimeout("the attempt's time is up")
            wait = left if timeout is None else min(timeout, left)
            try:
                stream = self._sockets.connect_tcp(
                    str(ip), port, wait, local_address, socket_options
                )
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                failure = exc
                continue
            return _DeadlineStream(stream, self._deadline)
        raise failure


def _answer(status: int) -> DeliveryResult:
    if 200 <= status < 300:
        return DeliveryResult(status, True, "")
    if 300 <= status < 400:
        return DeliveryResult(
            status, False, f"HTTP {status}: redirects are not followed"
        )
    retryable = status in (408, 429) or status >= 500
    return DeliveryResult(status, False, f"HTTP {status}", retryable)


def _post(
    dest: Destination, body: bytes, headers: dict[str, str], timeout: float
) -> int:
    backend = _PinnedBackend(dest, deadline=time.monotonic() + timeout)
    url = httpcore2.URL(
        scheme=dest.scheme.encode(),
        host=dest.host.encode(),
        port=dest.port,
        target=dest.target,
    )
    with (
        httpcore2.ConnectionPool(
            ssl_context=httpcore2.default_ssl_context(), network_backend=backend
        ) as pool,
        pool.stream(
            "POST",
            url,
            headers=list(headers.items()),
            content=body,
            extensions={
                "timeout": dict.fromkeys(("connect", "read", "write", "pool"), timeout)
            },
        ) as response,
    ):
        return response.status  # the body is never read


def deliver(
    url: str,
    secret: str,
    payload: dict[str, Any],
    *,
    allow_private: bool,
    timeout: float,
    delivery_id: str = "",
) -> DeliveryResult:
    """POST `payload` as signed JSON to `url` once, within `timeout` seconds in all;
    ok only for a 2xx answer. Never raises for what the receiver or the network
    does: every failure is a result with its reason. `delivery_id` (the same
    for every attempt of one delivery) lets a receiver drop a repeat."""
    try:
        dest = destination(url, allow_private=allow_private)
    except WebhookUnresolved as exc:
        return _counted(DeliveryResult(None, False, exc.message, retryable=True))
    except (InvalidWebhookUrl, WebhookRefused) as exc:
        metrics.webhook_deliveries.labels(result="refused").inc()
        return DeliveryResult(None, False, f"refused: {exc.message}", refused=True)
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    headers = {
        "Host": dest.authority,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **({"X-Kimberly-Delivery": delivery_id} if delivery_id else {}),
        **signature_headers(secret, body, timestamp=int(time.time())),
    }
    try:
        status = _post(dest, body, headers, timeout)
    except httpcore2.TimeoutException:
        result = DeliveryResult(None, False, f"no answer within {timeout:g} s", True)
    except (httpcore2.NetworkError, httpcore2.ProtocolError, OSError) as exc:
        reason = str(exc) or type(exc).__name__
        result = DeliveryResult(None, False, f"network error: {reason}", True)
    else:
        result = _answer(status)
    return _counted(result)


def _counted(result: DeliveryResult) -> DeliveryResult:
    metrics.webhook_deliveries.labels(result="ok" if result.ok else "failed").inc()
    return result


def retry_delays(
    max_attempts: int, base_seconds: float = RETRY_BASE_SECONDS
) -> list[int]:
    """Seconds to wait before the 2nd, 3rd, ... attempt of `max_attempts` in all:
    10, 30, 90, 270, 810, ... (at most an hour), each moved at random by up to
    ±RETRY_JITTER so deliveries that failed together do not retry together."""
    delays = []
    for n in range(max(max_attempts - 1, 0)):
        base = min(base_seconds * RETRY_FACTOR**n, RETRY_MAX_SECONDS)
        jitter = random.uniform(1 - RETRY_JITTER, 1 + RETRY_JITTER)  # noqa: S311
        delays.append(max(1, round(base * jitter)))
    return delays
