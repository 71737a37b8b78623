"""Gauges of the systems Kimberly runs on, read at scrape time by the web's /metrics:
PostgreSQL (up, size, connections, replication lag) and the Celery broker (queue
depth per queue, Redis up and memory). No user data is read, so they are exported
outside the maintenance scope (kimberly.hooks.system_registry), and they never
raise: a store that does not answer reads as `..._up 0`, which is what the
postgres_down alert waits for.

postgres_exporter and redis_exporter export much more (deploy/prometheus/README.md);
these are the few the alert rules and dashboards need, with no extra process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from django.conf import settings
from prometheus_client.core import GaugeMetricFamily, Metric

logger = logging.getLogger(__name__)

T = TypeVar("T")

# One round trip. Replication lag: on a standby, how old the last replayed
# transaction is; on a primary, the largest replay lag of its replicas (0 with
# none, or when the role may not read pg_stat_replication's lag columns).
_POSTGRES_SQL = """
SELECT pg_database_size(current_database()),
       current_setting('max_connections')::int,
       CASE WHEN pg_is_in_recovery()
            THEN coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)
            ELSE coalesce((SELECT max(extract(epoch FROM replay_lag))
                             FROM pg_stat_replication), 0)
       END
"""
# Every client connection of the server (max_connections is server-wide).
_CONNECTIONS_SQL = """
SELECT coalesce(state, 'unknown'), count(*) FROM pg_stat_activity
 WHERE backend_type = 'client backend' GROUP BY 1
"""


def _probe(
    name: str, what: str, read: Callable[[], T]
) -> tuple[GaugeMetricFamily, T | None]:
    """Read a store for a scrape: the `name` gauge says whether it answered, and
    the result is None when it did not (down is a value here, not an error)."""
    up = GaugeMetricFamily(name, f"1 when {what} answered this scrape, else 0.")
    try:
        result = read()
    except Exception:
        logger.warning("%s did not answer the metrics scrape", what, exc_info=True)
        up.add_metric([], 0)
        return up, None
    up.add_metric([], 1)
    return up, result


class PostgresCollector:
    """kimberly_postgres_*: `connection` is a Django connection (the default one
    unless a test passes another)."""

    def __init__(self, connection: Any = None) -> None:
        self._connection = connection

    def _read(self) -> tuple[tuple[Any, ...], list[tuple[str, int]]]:
        from django.db import connection as default

        with (self._connection or default).cursor() as cur:
            cur.execute(_POSTGRES_SQL)
            row = cur.fetchone()
            cur.execute(_CONNECTIONS_SQL)
            states = [(str(s), int(n)) for s, n in cur.fetchall()]
        return row, states

    def collect(self) -> Iterator[Metric]:
        up, read = _probe("kimberly_postgres_up", "PostgreSQL", self._read)
        yield up
        if read is None:
            return
        (size, max_conn, lag), states = read
        yield GaugeMetricFamily(
            "kimberly_postgres_database_size_bytes",
            "Size of the application's database on disk.",
            value=int(size),
        )
        if capacity := settings.POSTGRES_STORAGE_BYTES:
            yield GaugeMetricFamily(
                "kimberly_postgres_storage_used_ratio",
                "Database size over POSTGRES_STORAGE_BYTES (the volume's size).",
                value=int(size) / capacity,
            )
        conns = GaugeMetricFamily(
            "kimberly_postgres_connections",
            "Client connections to the server, by state.",
            labels=["state"],
        )
        for state, n in states:
            conns.add_metric([state], n)
        yield conns
        yield GaugeMetricFamily(
            "kimberly_postgres_max_connections",
            "The server's max_connections.",
            value=int(max_conn),
        )
        yield GaugeMetricFamily(
            "kimberly_postgres_replication_lag_seconds",
            "Replication lag: a standby's replay delay, or a primary's largest"
            " replica lag (0 without replicas).",
            value=float(lag),
        )


def celery_queue_names() -> list[str]:
    """Every queue the settings send tasks to: the default queue, the routes' and
    any declared in CELERY_TASK_QUEUES or on a beat entry."""
    names = {getattr(settings, "CELERY_TASK_DEFAULT_QUEUE", "celery")}
    routes = getattr(settings, "CELERY_TASK_ROUTES", None) or {}
    # a map, or a list of maps (router functions name no queue up front); a
    # route is {"queue": name, ...} or the queue's name alone
    for table in [routes] if isinstance(routes, dict) else routes:
        for route in table.values() if isinstance(table, dict) else ():
            queue = route if isinstance(route, str) else route.get("queue")
            if queue:
                names.add(queue)
    for queue in getattr(settings, "CELERY_TASK_QUEUES", None) or ():
        names.add(getattr(queue, "name", queue))
    for entry in getattr(settings, "CELERY_BEAT_SCHEDULE", {}).values():
        if queue := entry.get("options", {}).get("queue"):
            names.add(queue)
    return sorted(names)


# kombu's Redis transport keeps a queue's messages of priority p > 0 in a list
# of its own, "<queue>\x06\x16<p>" (default priority steps 0, 3, 6, 9).
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)


class BrokerCollector:
    """kimberly_celery_queue_depth{queue}: messages waiting in each broker queue
    (LLEN; a message a worker has taken but not acknowledged is not counted),
    and the broker Redis's up, memory and clients."""

    def __init__(self, url: str | None = None) -> None:
        self._url = url
        self._client: Any = None

    def _redis(self) -> Any:
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(
                self._url or settings.CELERY_BROKER_URL,
                socket_connect_timeout=1,
                socket_timeout=2,
            )
        return self._client

    def _read(self, queues: list[str]) -> tuple[list[int], dict[str, Any]]:
        pipe = self._redis().pipeline(transaction=False)
        for queue in queues:
            pipe.llen(queue)
            for step in _PRIORITY_STEPS:
                pipe.llen(f"{queue}{_PRIORITY_SEP}{step}")
        pipe.info()
        *lengths, info = pipe.execute()
        per = len(_PRIORITY_STEPS) + 1
        depths = [sum(lengths[i * per : (i + 1) * per]) for i in range(len(queues))]
        return depths, info

    def collect(self) -> Iterator[Metric]:
        url = self._url or settings.CELERY_BROKER_URL
        if not url.startswith(("redis://", "rediss://", "unix://")):
            return  # another broker: its own exporter tells
        queues = celery_queue_names()
        up, read = _probe(
            "kimberly_redis_up", "the broker's Redis", lambda: self._read(queues)
        )
        yield up
        if read is None:
            return
        depths, info = read
        depth = GaugeMetricFamily(
            "kimberly_celery_queue_depth",
            "Messages waiting in each Celery queue of the broker.",
            labels=["queue"],
        )
        for queue, n in zip(queues, depths, strict=True):
            depth.add_metric([queue], n)
        yield depth
        yield GaugeMetricFamily(
            "kimberly_redis_memory_used_bytes",
            "Memory the broker's Redis uses (INFO used_memory).",
            value=int(info.get("used_memory", 0)),
        )
        yield GaugeMetricFamily(
            "kimberly_redis_connected_clients",
            "Clients connected to the broker's Redis.",
            value=int(info.get("connected_clients", 0)),
        )
