"""/metrics: django-prometheus's process metrics plus the apps' store gauges.

Store gauges (read from PostgreSQL and the broker at scrape time) are exported
from their own registries: in multiprocess mode the default export only
aggregates what the processes wrote to PROMETHEUS_MULTIPROC_DIR, which cannot
hold DB-derived values. Apps add their collectors in AppConfig.ready through
kimberly.hooks. The system gauges come first and need no database scope, so a
scrape still says `kimberly_postgres_up 0` when PostgreSQL is down.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse
from django_prometheus.exports import ExportToDjangoView
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kimberly import rls
from kimberly.hooks import store_registry, system_registry

logger = logging.getLogger(__name__)


def metrics_view(request: HttpRequest) -> HttpResponse:
    base = ExportToDjangoView(request)
    system = generate_latest(system_registry)  # its collectors never raise
    try:
        # Store-wide gauges (counts over every user, no content).
        with rls.maintenance("metrics: store gauges"):
            store = generate_latest(store_registry)
    except Exception:  # a down DB must not hide the process metrics
        logger.warning("store gauges not exported", exc_info=True)
        store = b""
    return HttpResponse(base.content + system + store, content_type=CONTENT_TYPE_LATEST)
