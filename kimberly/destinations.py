"""Where the server may send a request a user chose the address of (a webhook):
the destination policy, shared by the users app (checked when the URL is set)
and the agents' webhook delivery (checked again, and pinned, at each attempt).

A URL must be https (http only where private destinations are allowed), name a
host that resolves, and every address it resolves to must be public unicast:
not the machine's own services, the private network, link-local (169.254.169.254)
or anything else that is not globally reachable, also when carried inside an
IPv6 address (mapped, 6to4, Teredo, NAT64), unless private ones are allowed.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

import httpx2

from kimberly.api.errors import ApplicationError

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_URL_CHARS = 2000


class InvalidWebhookUrl(ApplicationError):
    code = "invalid_webhook_url"
    status = 400


class WebhookUnresolved(InvalidWebhookUrl):
    """The host has no address (now): a delivery may try again later."""


class WebhookRefused(ApplicationError):
    code = "webhook_destination_refused"
    status = 400


@dataclass(frozen=True)
class Destination:
    scheme: str
    host: str  # as on the wire: IDNA-encoded, IPv6 without brackets
    port: int
    authority: str  # the Host header
    target: bytes  # path and query
    addresses: list[IP]


_KINDS = (
    ("unspecified", "is_unspecified"),
    ("loopback", "is_loopback"),
    ("link-local", "is_link_local"),
    ("site-local", "is_site_local"),
    ("multicast", "is_multicast"),
    ("private", "is_private"),
    ("reserved", "is_reserved"),
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries (mapped, 6to4, Teredo, NAT64): each
    reaches that IPv4 address and must pass the policy too."""
    found = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
    if ip in _NAT64:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return [inner for inner in found if inner is not None]


def forbidden_kind(ip: IP) -> str | None:
    """Why `ip` is no place for a webhook ("loopback", "private", ...), or None
    for a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        for inner in _embedded_ipv4(ip):
            if kind := forbidden_kind(inner):
                return kind
    for kind, attribute in _KINDS:
        if getattr(ip, attribute, False):  # is_site_local: IPv6 only
            return kind
    return None if ip.is_global else "not globally reachable"


def _parse(url: str, *, allow_private: bool) -> httpx2.URL:
    if len(url) > MAX_URL_CHARS:
        raise InvalidWebhookUrl(f"must be at most {MAX_URL_CHARS} characters")
    try:
        parsed = httpx2.URL(url)
    except (httpx2.InvalidURL, ValueError, TypeError):
        raise InvalidWebhookUrl("is not a valid URL") from None
    schemes = ("https", "http") if allow_private else ("https",)
    if parsed.scheme not in schemes:
        raise InvalidWebhookUrl(f"must be an {' or '.join(schemes)} URL")
    if not parsed.host:
        raise InvalidWebhookUrl("must name a host")
    if parsed.userinfo:
        raise InvalidWebhookUrl("must not hold a user name or password")
    return parsed


def _resolve(host: str, port: int) -> list[IP]:
    """Every address of `host`, in the resolver's order, without duplicates."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise WebhookUnresolved(f"the host {host} does not resolve") from None
    addresses: list[IP] = []
    for *_, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise WebhookUnresolved(f"the host {host} does not resolve")
    return addresses


def destination(url: str, *, allow_private: bool) -> Destination:
    parsed = _parse(url, allow_private=allow_private)
    host = parsed.raw_host.decode("ascii")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    authority = f"[{host}]" if ":" in host else host
    if parsed.port is not None:
        authority += f":{parsed.port}"
    addresses = _resolve(host, port)
    if not allow_private:
        for ip in addresses:
            if kind := forbidden_kind(ip):
                raise WebhookRefused(
                    f"{parsed.host} resolves to a {kind} address;"
                    " webhooks go to public addresses only"
                )
    return Destination(parsed.scheme, host, port, authority, parsed.raw_path, addresses)


def check_destination(url: str, *, allow_private: bool) -> list[IP]:
    """The addresses `url` resolves to, all of them allowed: https (http only with
    allow_private), a host that resolves (WebhookUnresolved), and no address that
    is not public unicast (WebhookRefused), unless allow_private."""
    return destination(url, allow_private=allow_private).addresses
