"""Which metric names the project exports, and which a PromQL expression reads:
what the alert rule and dashboard tests hold against each other.

The exported names come from real scrapes, not a list: the web's /metrics (the
test client; store gauges included, with the conditions that make every one of
them appear) and the registry a Celery worker or beat serves on its port.
"""

from __future__ import annotations

import re
from typing import Any

from django.test import override_settings
from django.utils import timezone
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

# Made by Prometheus itself for every target, not by an exporter.
PROMETHEUS_SYNTHETIC = frozenset({"up", "scrape_duration_seconds"})

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}


def sample_names(exposition: str) -> set[str]:
    """Every series name an exposition text gives Prometheus, including those of
    labelled families that have no sample yet (a counter `x` is `x_total`...)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(family.name + s for s in _SUFFIXES.get(family.type, ("",)))
        names.update(s.name for s in family.samples)
    return names


def exported_metric_names(api: Any) -> set[str]:
    """Names served by the web's /metrics and by a worker's or beat's port. Needs
    the database: a nightly run and a storage capacity make the gauges that
    depend on them appear."""
    from kimberly import worker_metrics
    from memory.models import MeditationRun

    MeditationRun.objects.create(
        scope="all", scoring_version="names", weights={}, as_of=timezone.now()
    )
    with override_settings(POSTGRES_STORAGE_BYTES=2**40):
        resp = api.get("/metrics")
    assert resp.status_code == 200
    served = generate_latest(worker_metrics._registry()).decode()
    return sample_names(resp.content.decode()) | sample_names(served)


_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "inf", "nan", "by", "without", "on"}
    | {"ignoring", "group_left", "group_right"}
)


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL (or Grafana-templated PromQL) expression reads."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # ranges and subqueries
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\$\{?\w+\}?", " ", s)  # Grafana variables
    names = set()
    for m in re.finditer(r"(?<![\w.:])([A-Za-z_:][\w:]*)\s*(\()?", s):
        word, call = m.group(1), m.group(2)
        if not call and word.lower() not in _KEYWORDS:
            names.add(word)
    return names


def unknown_names(
    exprs: list[str], exported: set[str], *, allowed: set[str]
) -> dict[str, set[str]]:
    """expr -> the names it reads that nothing exports (nor `allowed` covers)."""
    unknown = {}
    for expr in exprs:
        missing = promql_metric_names(expr) - exported - PROMETHEUS_SYNTHETIC - allowed
        if missing:
            unknown[expr] = missing
    return unknown
