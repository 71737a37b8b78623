"""/metrics: django-prometheus's process metrics plus the apps' store gauges.

Store gauges (read from PostgreSQL at scrape time) are exported from their own
registry: in multiprocess mode the default export only aggregates what the
processes wrote to PROMETHEUS_MULTIPROC_DIR, which cannot hold DB-derived values.
Apps add their collectors in AppConfig.ready through kimberly.hooks.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django_prometheus.exports import ExportToDjangoView
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kimberly import rls
from kimberly.hooks import store_registry


def metrics_view(request: HttpRequest) -> HttpResponse:
    base = ExportToDjangoView(request)
    try:
        # Store-wide gauges (counts over every user, no content).
        with rls.maintenance("metrics: store gauges"):
            store = generate_latest(store_registry)
    except Exception:  # noqa: BLE001 - a down DB must not hide the process metrics
        store = b""
    return HttpResponse(base.content + store, content_type=CONTENT_TYPE_LATEST)
