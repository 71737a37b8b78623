"""The API's rate limits: one DRF throttle on every view (REST_FRAMEWORK
DEFAULT_THROTTLE_CLASSES), per user and per client IP, per endpoint group.

DRF runs throttles after authentication and permissions, so an anonymous
request to an authenticated endpoint is a 401 before it counts, and the open
endpoints (health, login, signup: they have no authentication) are never
counted here; login and signup have limits of their own. A route's group comes
from its URL pattern and method (ROUTE_GROUPS, first match); the limits of each
group are settings (kimberly/settings/ratelimits.py). tests/test_ratelimits.py
refuses an authenticated route that no rule names, so a new endpoint gets a
group on purpose rather than the catch-all `other`.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from prometheus_client import Counter
from rest_framework.throttling import BaseThrottle

from kimberly.api.errors import RateLimited
from kimberly.api.ratelimit import api_rate_limit_hit, client_ip

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# (URL pattern as Django joins it, group of reads, group of the other methods)
ROUTE_GROUPS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"^v1/memory/query$"), "query", "query"),
    (
        re.compile(r"^v1/(memory|attachments|goals)(/|$)"),
        "memory_read",
        "memory_write",
    ),
    (re.compile(r"^v1/chat(/|$)"), "chat", "chat"),
    (re.compile(r"^v1/agents(/|$)"), "agents", "agents"),
    (re.compile(r"^v1/(user|compliance)(/|$)"), "user", "user"),
    (re.compile(r"^v1/audit(/|$)"), "audit", "audit"),
)
FALLBACK_GROUP = "other"

rate_limited = Counter(
    "kimberly_rate_limited",
    "Requests refused by the API rate limits, by group and by which limit.",
    ["group", "by"],
)


def route_group(route: str, method: str) -> str | None:
    """The group of a request to `route` (e.g. 'v1/memory/<str:memory_id>')."""
    for pattern, reads, writes in ROUTE_GROUPS:
        if pattern.match(route):
            return reads if method.upper() in READ_METHODS else writes
    return None


class ApiRateThrottle(BaseThrottle):
    """Counts each authenticated request; raises RateLimited (429) past a limit."""

    def allow_request(self, request: Any, view: Any) -> bool:
        user = getattr(request, "user", None)
        if not settings.RATE_LIMIT_ENABLED or not getattr(
            user, "is_authenticated", False
        ):
            return True
        match = request.resolver_match
        group = route_group(match.route if match else "", request.method)
        try:
            api_rate_limit_hit(
                group=group or FALLBACK_GROUP,
                user_id=str(user.pk),  # type: ignore[union-attr]
                ip=client_ip(request.META),
            )
        except RateLimited as exc:
            rate_limited.labels(exc.details["group"], exc.details["by"]).inc()
            raise
        return True
