"""Fixed-window rate limits counted atomically in Redis.

DRF's SimpleRateThrottle reads, appends and writes back a list in the cache, so
concurrent attempts can slip past it; INCR is atomic, so N parallel guesses
count as N.
"""

from __future__ import annotations

import hashlib
import logging

from django.conf import settings
from django_redis import get_redis_connection
from redis.exceptions import RedisError

from kimberly.api.errors import RateLimited

logger = logging.getLogger(__name__)


def rate_limit_hit(*, scope: str, ident: str, limit: int, window_seconds: int) -> None:
    """Count one attempt for (scope, ident); raise RateLimited past `limit` per window."""
    # Hash the identifier: keys must not carry emails or IPs in clear.
    digest = hashlib.sha256(ident.encode()).hexdigest()[:32]
    key = f"kb:rl:{scope}:{digest}"
    try:
        pipe = get_redis_connection("default").pipeline()
        pipe.incr(key)
        pipe.expire(key, window_seconds, nx=True)
        pipe.ttl(key)
        count, _, ttl = pipe.execute()
    except RedisError:
        # Fail open: losing Redis must not lock every user out; readiness reports it.
        logger.warning("rate limiter unavailable", extra={"scope": scope})
        return
    if int(count) > limit:
        retry_after = max(int(ttl), 1)
        raise RateLimited(
            "Too many attempts; try again later.",
            retry_after=retry_after,
            details={"scope": scope},
        )


def client_ip(meta: dict[str, str]) -> str:
    """The client address. X-Forwarded-For is client-controlled, so it is never
    trusted; behind a proxy set CLIENT_IP_HEADER to the header that proxy sets
    itself (e.g. HTTP_FLY_CLIENT_IP on Fly.io)."""
    header = settings.CLIENT_IP_HEADER
    if header and meta.get(header):
        return meta[header].strip()[:64]
    return meta.get("REMOTE_ADDR", "") or "unknown"
