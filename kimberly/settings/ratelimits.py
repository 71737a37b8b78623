"""Rate limits of the authenticated API, per endpoint group (imported by base.py).

Every authenticated request counts once against its user and once against its
client IP (kimberly.api.ratelimit, fixed windows in Redis); past either limit
the answer is 429 `rate_limited` with Retry-After. Which group a route belongs
to is decided in kimberly/api/throttle.py (by path and method); a test refuses
an authenticated route that no rule names. Each group reads
RATE_LIMIT_<GROUP>_PER_USER, RATE_LIMIT_<GROUP>_PER_IP and
RATE_LIMIT_<GROUP>_WINDOW_SECONDS (default RATE_LIMIT_WINDOW_SECONDS).
The per-IP limits are higher: several users may share one address (a NAT, an
office). Login and signup keep their own limits (base.py), chat messages their
own too (CHAT_RATE_PER_USER, on top of the chat group).
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from kimberly.env import env_bool, env_int

# Off: nothing is counted (e.g. a gateway in front already limits).
RATE_LIMIT_ENABLED = env_bool("RATE_LIMIT_ENABLED", True)
RATE_LIMIT_WINDOW_SECONDS = env_int("RATE_LIMIT_WINDOW_SECONDS", 60)

# group: (requests per user, requests per IP) per window. Generous: a client
# paging through its memories or an agent polling its task stays far below.
_DEFAULTS: dict[str, tuple[int, int]] = {
    "memory_read": (600, 1200),  # GET of memories, attachments, goals, imports, ...
    "memory_write": (300, 600),  # every other method on those
    "query": (120, 240),  # POST /v1/memory/query: retrieval, the costliest read
    "chat": (120, 240),  # conversations, transcripts, provenance, POST /v1/chat
    "agents": (120, 240),  # tasks, reminders, events, the calendar
    "user": (60, 120),  # profile and settings, consents, export, erasure, compliance
    "audit": (120, 240),  # the user's own audit trail
    # A route no rule names: the suite refuses one; this only keeps it limited.
    "other": (60, 120),
}


def _group(name: str, user: int, ip: int) -> dict[str, int]:
    env = f"RATE_LIMIT_{name.upper()}"
    limits = {
        "user": env_int(f"{env}_PER_USER", user),
        "ip": env_int(f"{env}_PER_IP", ip),
        "window": env_int(f"{env}_WINDOW_SECONDS", RATE_LIMIT_WINDOW_SECONDS),
    }
    if min(limits.values()) < 1:
        raise ImproperlyConfigured(f"{env}_* must be at least 1")
    return limits


# {group: {"user": n, "ip": n, "window": seconds}}
RATE_LIMITS = {name: _group(name, *limits) for name, limits in _DEFAULTS.items()}
