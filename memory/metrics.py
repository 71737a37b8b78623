"""Prometheus metrics of the memory app (no per-user labels, ever)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

memory_writes = Counter(
    "kimberly_memory_writes",
    "Memory writes by tier and result (ok, quota_exceeded, invalid).",
    ["tier", "result"],
)
quota_rejections = Counter(
    "kimberly_quota_rejections",
    "Writes refused because they would pass the tier's hard limit.",
    ["tier"],
)

embedding_calls = Counter(
    "kimberly_embedding_calls", "Batched embedding model calls by result.", ["result"]
)
embedding_seconds = Histogram(
    "kimberly_embedding_seconds",
    "Seconds per batched embedding call.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
retrieval_seconds = Histogram(
    "kimberly_retrieval_seconds",
    "Seconds per retrieval stage (embed, lexical, semantic, rerank).",
    ["stage"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)


class _CachedStoreRead:
    """A store read done at most once per CACHE_SECONDS over all web processes
    (the result is shared through the cache): scrapes stay cheap."""

    CACHE_KEY = ""
    CACHE_SECONDS = 15

    def query(self) -> Any:
        raise NotImplementedError

    def _read(self) -> Any:
        from django.core.cache import cache

        cached = cache.get(self.CACHE_KEY)
        if cached is not None:
            return cached
        data = self.query()
        cache.set(self.CACHE_KEY, data, self.CACHE_SECONDS)
        return data


class MemoryStoreCollector(_CachedStoreRead):
    """Gauges read from PostgreSQL at scrape time, cached briefly: items per tier and
    status, and active bytes per tier (from the quota rows, not a table scan)."""

    CACHE_KEY = "kb:metrics:memory_store"

    def query(self) -> dict[str, list[tuple[str, str, int]] | list[tuple[str, int]]]:
        from django.db import connection

        with connection.cursor() as cur:
            cur.execute(
                "SELECT tier, status, count(*) FROM memory_memoryitem GROUP BY tier, status"
            )
            items = [(r[0], r[1], int(r[2])) for r in cur.fetchall()]
            cur.execute(
                "SELECT tier, coalesce(sum(used_bytes), 0) FROM memory_quota GROUP BY tier"
            )
            size = [(r[0], int(r[1])) for r in cur.fetchall()]
        return {"items": items, "bytes": size}

    def collect(self) -> Iterator[Metric]:
        data = self._read()
        items = GaugeMetricFamily(
            "kimberly_memory_items",
            "Memory items by tier and status.",
            labels=["tier", "status"],
        )
        for tier, status, n in data["items"]:
            items.add_metric([tier, status], n)
        size = GaugeMetricFamily(
            "kimberly_memory_bytes",
            "Bytes of active memories by tier.",
            labels=["tier"],
        )
        for tier, total in data["bytes"]:
            size.add_metric([tier], total)
        yield items
        yield size


class EmbeddingBacklogCollector:
    """kimberly_embedding_backlog, counted at scrape time: active memories of users
    with embeddings on that have no vector of their content yet.

    Not cached and not a sampled Gauge (that read 0 while thousands waited): the
    count walks only the memory_unembedded partial index, so it costs what is
    waiting, and stops at LIMIT (the gauge then reads "at least LIMIT").
    """

    LIMIT = 100_000

    def count(self) -> int:
        from memory.selectors import items_waiting_for_vector  # imports this module

        return items_waiting_for_vector()[: self.LIMIT].count()

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "kimberly_embedding_backlog",
            f"Memories waiting for their vector, counted at scrape (at most {self.LIMIT}).",
            value=self.count(),
        )


class QuotaPressureCollector(_CachedStoreRead):
    """kimberly_quota_pressure_users{threshold}: users with any tier at or above
    that fraction of its (soft) quota, for each of QUOTA_PRESSURE_THRESHOLDS. A
    count, never who: one pass over the quota rows, cached like the store gauges."""

    CACHE_KEY = "kb:metrics:quota_pressure"

    def query(self) -> list[tuple[str, int]]:
        from django.conf import settings

        from memory.quotas import quota_pressure_counts  # imports us

        thresholds = [float(t) for t in settings.QUOTA_PRESSURE_THRESHOLDS]
        counts = quota_pressure_counts(thresholds)
        return [(format(t, "g"), n) for t, n in zip(thresholds, counts, strict=True)]

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "kimberly_quota_pressure_users",
            "Users with any tier at or above `threshold` of its quota.",
            labels=["threshold"],
        )
        for threshold, n in self._read():
            gauge.add_metric([threshold], n)
        yield gauge


class MeditationRunCollector:
    """How long the latest nightly (scope-all, not dry) run took, or has been
    running, against MEDITATION_WINDOW_SECONDS: meditation_job_slow compares the
    two, so a run that hangs past its window is seen before it ends."""

    def collect(self) -> Iterator[Metric]:
        from django.conf import settings
        from django.db import connection

        with connection.cursor() as cur:
            cur.execute(
                """SELECT CASE WHEN status = 'queued'
                               THEN extract(epoch FROM statement_timestamp() - started_at)
                               ELSE coalesce(duration_ms, 0) / 1000.0 END
                     FROM memory_meditationrun
                    WHERE user_id IS NULL AND NOT dry_run
                    ORDER BY started_at DESC LIMIT 1"""
            )
            row = cur.fetchone()
        if row is not None:
            yield GaugeMetricFamily(
                "kimberly_meditation_latest_all_seconds",
                "Seconds the latest nightly meditation run took (or has run so far).",
                value=float(row[0]),
            )
        yield GaugeMetricFamily(
            "kimberly_meditation_window_seconds",
            "The window a nightly meditation run should finish in"
            " (MEDITATION_WINDOW_SECONDS).",
            value=settings.MEDITATION_WINDOW_SECONDS,
        )


meditation_seconds = Histogram(
    "kimberly_meditation_seconds",
    "Seconds per user meditation run.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
meditation_all_seconds = Histogram(
    "kimberly_meditation_all_seconds",
    "Seconds from the start of a scope-all (nightly) run to its last user run.",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400),
)
meditation_items = Counter(
    "kimberly_meditation_items",
    "Retention decisions applied, by decision.",
    ["decision"],
)
meditation_last_success = Gauge(
    "kimberly_meditation_last_success_timestamp",
    "Unix time of the last successful (non-dry) meditation run.",
    multiprocess_mode="max",
)
meditation_failures = Counter(
    "kimberly_meditation_failures",
    "User meditation runs that failed (once per run, not per attempt).",
)

imports = Counter(
    "kimberly_memory_imports",
    "Imports by format and result (succeeded, failed, invalid, quota_exceeded, "
    "too_large, queued).",
    ["format", "result"],
)
import_items = Counter(
    "kimberly_memory_import_items",
    "Imported records by format and result (imported, skipped_duplicate, refused).",
    ["format", "result"],
)

attachments = Counter(
    "kimberly_attachments",
    "Attachment uploads by sniffed type and result (ok, an error code), and deletes.",
    ["type", "result"],
)
