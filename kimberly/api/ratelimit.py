"""Fixed-window rate limits counted atomically in Redis.

DRF's SimpleRateThrottle reads, appends and writes back a list in the cache, so
concurrent attempts can slip past it; INCR is atomic, so N parallel guesses
count as N.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging

from django.conf import settings
from django_redis import get_redis_connection
from redis.exceptions import RedisError

from kimberly.api.errors import RateLimited

logger = logging.getLogger(__name__)


def rate_limit_key(scope: str, ident: str) -> str:
    """The Redis key counting (scope, ident) (erasure deletes a user's keys by it)."""
    # Hash the identifier: keys must not carry emails or IPs in clear.
    digest = hashlib.sha256(ident.encode()).hexdigest()[:32]
    return f"kb:rl:{scope}:{digest}"


def _count(keys: list[str], window_seconds: int) -> list[tuple[int, int]] | None:
    """One more hit on each key in one round trip: [(count, seconds left)], or
    None when Redis is unreachable (the caller fails open)."""
    try:
        pipe = get_redis_connection("default").pipeline()
        for key in keys:
            pipe.incr(key)
            # NX: the first hit starts the window (and a key that lost its
            # expiry gets one back); later hits never extend it.
            pipe.expire(key, window_seconds, nx=True)
            pipe.ttl(key)
        replies = pipe.execute()
    except RedisError:
        # Fail open: losing Redis must not lock every user out; readiness reports it.
        logger.warning("rate limiter unavailable", extra={"keys": len(keys)})
        return None
    return [(int(replies[i]), int(replies[i + 2])) for i in range(0, len(replies), 3)]


def rate_limit_hit(*, scope: str, ident: str, limit: int, window_seconds: int) -> None:
    """Count one attempt for (scope, ident); raise RateLimited past `limit` per window."""
    counted = _count([rate_limit_key(scope, ident)], window_seconds)
    if counted is None:
        return
    count, ttl = counted[0]
    if count > limit:
        retry_after = max(ttl, 1)
        raise RateLimited(
            "Too many attempts; try again later.",
            retry_after=retry_after,
            details={"scope": scope},
        )


def api_rate_limit_key(group: str, by: str, ident: str) -> str:
    return rate_limit_key(f"api:{group}:{by}", ident)


def api_rate_limit_keys(user_id: str) -> list[str]:
    """Every API rate-limit key of one user (the per-IP ones name no user)."""
    return [api_rate_limit_key(g, "user", user_id) for g in settings.RATE_LIMITS]


def api_rate_limit_hit(*, group: str, user_id: str, ip: str) -> None:
    """Count one request of `user_id` from `ip` in `group` (RATE_LIMITS); past the
    user's or the IP's limit, 429 rate_limited naming the group and which one."""
    limits = settings.RATE_LIMITS[group]
    keys = {
        "user": api_rate_limit_key(group, "user", user_id),
        "ip": api_rate_limit_key(group, "ip", ip),
    }
    counted = _count(list(keys.values()), limits["window"])
    if counted is None:
        return
    for by, (count, ttl) in zip(keys, counted, strict=True):
        if count > limits[by]:
            retry_after = max(ttl, 1)
            raise RateLimited(
                f"Too many requests to {group} from this "
                f"{'account' if by == 'user' else 'address'}; try again later.",
                retry_after=retry_after,
                details={
                    "group": group,
                    "by": by,
                    "limit": limits[by],
                    "window_seconds": limits["window"],
                },
            )


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(value: str) -> Address | None:
    """The address in `value`; an IPv4-mapped IPv6 one (a dual-stack listener's
    view of an IPv4 peer) as plain IPv4, so IPv4 CIDRs match it."""
    try:
        ip = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    return getattr(ip, "ipv4_mapped", None) or ip


def _trusted(ip: Address | None) -> bool:
    return ip is not None and any(ip in net for net in settings.TRUSTED_PROXIES)


def client_ip(meta: dict[str, str]) -> str:
    """The client address. Forwarding headers are client-controlled unless a trusted
    proxy (TRUSTED_PROXIES) made the connection: only then CLIENT_IP_HEADER, or
    X-Forwarded-For read from the right (each proxy appends the address it saw)
    up to the first address that is not a trusted proxy, names the client."""
    remote = meta.get("REMOTE_ADDR", "") or "unknown"
    if not _trusted(_address(remote)):
        return remote
    if header := settings.CLIENT_IP_HEADER:
        forwarded = _address(meta.get(header, ""))
        return str(forwarded) if forwarded else remote
    client = remote
    for hop in reversed(meta.get("HTTP_X_FORWARDED_FOR", "").split(",")):
        address = _address(hop)
        if address is None:
            break  # garbage before any untrusted hop: keep the last proxy's view
        client = str(address)
        if not _trusted(address):
            break
    return client
