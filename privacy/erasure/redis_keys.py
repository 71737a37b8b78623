"""Every Redis key pattern of the code, and how each is erased and probed for a user.

The guard test (privacy/tests/test_erasure.py) reads every `kb:` literal in the
project's code and fails when one is not covered by REDIS_KEYS, so a new key
pattern must say here whether it holds a user's data and how it goes.

Raw keys (get_redis_connection) are used as written; keys written through the
Django cache get its prefix and version (`kb:<version>:<key>`), hence
`_cache_pattern`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django_redis import get_redis_connection

from kimberly.api.ratelimit import api_rate_limit_keys, rate_limit_key

# Where each key comes from (the literal the guard test matches):
ST_PREFIX = "kb:st:"  # memory/short_term.py: kb:st:<user_id>:{ids,items,ready}
FORECAST_PREFIX = "kb:forecast:"  # memory/meditation/forecast.py (Django cache)
PENDING_REPLY_PREFIX = "kb:chat:pending:"  # chat/pending.py (Django cache)
RATE_PREFIX = "kb:rl:"  # kimberly/api/ratelimit.py: kb:rl:<scope>:<sha256(ident)>
QEMB_PREFIX = "kb:qemb:"  # memory/retrieval/candidates.py: kb:qemb:<model>:<sha>
RETRIEVAL_LOG = "kb:retrieval:log"  # memory/retrieval/provenance.py: a list
EMBED_PENDING = "kb:embed:pending"  # memory/indexing/queue.py: a set of item ids
EMBED_SCHEDULED = "kb:embed:scheduled"  # memory/indexing/queue.py: a flag
SWEEP_CURSOR = "kb:embed:sweep_cursor"  # memory/indexing/repair.py: an item id
METRICS = "kb:metrics:memory_store"  # memory/metrics.py: system-wide totals

# Rate-limit scopes counted per user (ident: the user id) or per email (the
# account's address); login_ip and signup_ip count an address, which is no
# one user's: they hold no id of the user and expire with their window.
RATE_SCOPES_BY_USER_ID = ("chat",)
RATE_SCOPES_BY_EMAIL = ("login_email",)


@dataclass
class Subject:
    """What the job knows about the user it erases, read before their rows go:
    the names of their rate-limit keys (hashed, never the email) and item ids."""

    user_id: uuid.UUID
    rate_keys: list[str] = field(default_factory=list)
    item_ids: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)


def rate_keys_of(user_id: uuid.UUID, email: str) -> list[str]:
    """The rate-limit keys that count this user's attempts (by id or by email),
    the API's per-user counters of every endpoint group included."""
    return (
        [rate_limit_key(sc, str(user_id)) for sc in RATE_SCOPES_BY_USER_ID]
        + [rate_limit_key(sc, email) for sc in RATE_SCOPES_BY_EMAIL]
        + api_rate_limit_keys(str(user_id))
    )


def _conn() -> Any:
    return get_redis_connection("default")


def _cache_pattern(key_glob: str) -> str:
    return str(cache.make_key(key_glob, version="*"))  # type: ignore[arg-type]


def _scan(pattern: str) -> list[bytes]:
    return list(_conn().scan_iter(pattern, count=1000))


def _delete_matching(pattern: str) -> int:
    keys = _scan(pattern)
    return int(_conn().delete(*keys)) if keys else 0


# --- per-user keys: deleted by their pattern, probed by SCAN -------------------


def _st_pattern(s: Subject) -> str:
    return f"{ST_PREFIX}{s.user_id}:*"


def _forecast_pattern(s: Subject) -> str:
    return _cache_pattern(f"{FORECAST_PREFIX}{s.user_id}:*")


def _pending_reply_pattern(s: Subject) -> str:
    return _cache_pattern(f"{PENDING_REPLY_PREFIX}{s.user_id}:*")


def erase_pending_replies(s: Subject) -> int:
    return _delete_matching(_pending_reply_pattern(s))


def probe_pending_replies(s: Subject) -> int:
    return len(_scan(_pending_reply_pattern(s)))


def erase_short_term(s: Subject) -> int:
    return _delete_matching(_st_pattern(s))


def probe_short_term(s: Subject) -> int:
    return len(_scan(_st_pattern(s)))


def erase_forecast(s: Subject) -> int:
    return _delete_matching(_forecast_pattern(s))


def probe_forecast(s: Subject) -> int:
    return len(_scan(_forecast_pattern(s)))


def erase_rate_limits(s: Subject) -> int:
    return int(_conn().delete(*s.rate_keys)) if s.rate_keys else 0


def probe_rate_limits(s: Subject) -> int:
    return int(_conn().exists(*s.rate_keys)) if s.rate_keys else 0


# --- shared structures holding the user's ids: their entries are removed -------


def _log_entries(s: Subject) -> list[bytes]:
    uid = str(s.user_id)
    found = []
    for raw in _conn().lrange(RETRIEVAL_LOG, 0, -1):
        try:
            if json.loads(raw).get("u") == uid:
                found.append(raw)
        except (ValueError, AttributeError):
            continue
    return found


def erase_retrieval_log(s: Subject) -> int:
    conn = _conn()
    return sum(int(conn.lrem(RETRIEVAL_LOG, 0, raw)) for raw in _log_entries(s))


def probe_retrieval_log(s: Subject) -> int:
    return len(_log_entries(s))


def erase_embed_pending(s: Subject) -> int:
    return int(_conn().srem(EMBED_PENDING, *s.item_ids)) if s.item_ids else 0


def probe_embed_pending(s: Subject) -> int:
    if not s.item_ids:
        return 0
    return sum(bool(m) for m in _conn().smismember(EMBED_PENDING, s.item_ids))


def erase_sweep_cursor(s: Subject) -> int:
    # The cursor is one item id; if it is theirs, the sweep simply starts over.
    conn = _conn()
    raw = conn.get(SWEEP_CURSOR)
    if raw is not None and raw.decode() in set(s.item_ids):
        return int(conn.delete(SWEEP_CURSOR))
    return 0


def probe_sweep_cursor(s: Subject) -> int:
    raw = _conn().get(SWEEP_CURSOR)
    return int(raw is not None and raw.decode() in set(s.item_ids))


# The query-vector cache is keyed by sha256(user id + query): a user's entries
# cannot be told from anyone else's, so erasure drops the whole cache (every
# user merely recomputes a query vector once). The probe counts entries older
# than the erasure's start (their age is their TTL's shortfall): none may be,
# and newer ones are other users' (the erased account can no longer query).
def erase_query_vectors(s: Subject) -> int:
    return _delete_matching(f"{QEMB_PREFIX}*")


def probe_query_vectors(s: Subject) -> int:
    conn = _conn()
    lifetime = settings.QUERY_EMBEDDING_CACHE_SECONDS
    age_limit = time.time() - s.started
    older = 0
    for key in _scan(f"{QEMB_PREFIX}*"):
        ttl = int(conn.ttl(key))
        if ttl < 0 or lifetime - ttl > age_limit + 1:
            older += 1
    return older


@dataclass(frozen=True)
class RedisKey:
    """One key pattern: where it comes from, whose data it holds, how it goes."""

    prefix: str  # the literal in the code (a prefix of every key it makes)
    source: str
    holds: str
    erase: Callable[[Subject], int] | None = None  # None: holds no user's data
    probe: Callable[[Subject], int] | None = None


REDIS_KEYS: tuple[RedisKey, ...] = (
    RedisKey(
        ST_PREFIX,
        "memory/short_term.py",
        "the user's short-term context (ids, summaries, ready marker)",
        erase_short_term,
        probe_short_term,
    ),
    RedisKey(
        FORECAST_PREFIX,
        "memory/meditation/forecast.py (Django cache)",
        "cached meditation forecasts of the user",
        erase_forecast,
        probe_forecast,
    ),
    RedisKey(
        PENDING_REPLY_PREFIX,
        "chat/pending.py (Django cache)",
        "the state of the user's replies being answered (no text)",
        erase_pending_replies,
        probe_pending_replies,
    ),
    RedisKey(
        RATE_PREFIX,
        "kimberly/api/ratelimit.py (users/services.py, chat/services.py)",
        "rate-limit counters keyed by the user's id (chat) or email (login)",
        erase_rate_limits,
        probe_rate_limits,
    ),
    RedisKey(
        QEMB_PREFIX,
        "memory/retrieval/candidates.py",
        "cached query vectors (keyed by a hash of user id and query)",
        erase_query_vectors,
        probe_query_vectors,
    ),
    RedisKey(
        RETRIEVAL_LOG,
        "memory/retrieval/provenance.py",
        "queued retrieval records (entries carry the user id)",
        erase_retrieval_log,
        probe_retrieval_log,
    ),
    RedisKey(
        EMBED_PENDING,
        "memory/indexing/queue.py",
        "the embedding queue (ids of items to embed)",
        erase_embed_pending,
        probe_embed_pending,
    ),
    RedisKey(
        SWEEP_CURSOR,
        "memory/indexing/repair.py",
        "the embedding repair sweep's cursor (one item id)",
        erase_sweep_cursor,
        probe_sweep_cursor,
    ),
    RedisKey(EMBED_SCHEDULED, "memory/indexing/queue.py", "a flag; no user data"),
    RedisKey(METRICS, "memory/metrics.py", "system-wide totals; no user data"),
)
