"""/metrics: django-prometheus's process metrics plus the apps' store gauges.

Store gauges (read from PostgreSQL at scrape time) are exported from their own
registry: in multiprocess mode the default export only aggregates what the
processes wrote to PROMETHEUS_MULTIPROC_DIR, which cannot hold DB-derived values.
Apps add their collectors from their AppConfig.ready (kimberly imports no app).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django_prometheus.exports import ExportToDjangoView
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

_store_registry = CollectorRegistry(auto_describe=False)
_registered: set[str] = set()


def register_store_collector(collector: Any) -> None:
    """Export `collector` (anything with collect()) at every scrape, once per class
    (ready() may run again in one process, e.g. in tests)."""
    name = f"{type(collector).__module__}.{type(collector).__qualname__}"
    if name not in _registered:
        _registered.add(name)
        _store_registry.register(collector)


def metrics_view(request: HttpRequest) -> HttpResponse:
    base = ExportToDjangoView(request)
    try:
        store = generate_latest(_store_registry)
    except Exception:  # noqa: BLE001 - a down DB must not hide the process metrics
        store = b""
    return HttpResponse(base.content + store, content_type=CONTENT_TYPE_LATEST)
