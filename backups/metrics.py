"""Backup gauges, read from BackupRun rows at every scrape (web /metrics).

The alert rules use these names: a failed create shows as a failure newer than
the last success, a stale backup as an old last success.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, doc)
    gauge.add_metric([], value)
    return gauge


class BackupCollector:
    def collect(self) -> Iterator[Metric]:
        from backups.selectors import backup_last_runs

        last = backup_last_runs()
        yield _gauge(
            "kimberly_backup_last_success_timestamp_seconds",
            "When the last successful backup (create) finished, Unix time; 0: never.",
            last.success_at,
        )
        yield _gauge(
            "kimberly_backup_last_failure_timestamp_seconds",
            "When the last failed backup (create) finished, Unix time; 0: never.",
            last.failure_at,
        )
        yield _gauge(
            "kimberly_backup_last_size_bytes",
            "Size of the last successful backup's dump, bytes; 0: none.",
            last.size_bytes,
        )
        yield _gauge(
            "kimberly_backup_last_verify_success_timestamp_seconds",
            "When the last successful restore test (verify) finished, Unix time.",
            last.verify_success_at,
        )
