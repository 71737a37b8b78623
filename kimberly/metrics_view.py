"""/metrics: django-prometheus's process metrics plus the apps' store gauges.

Store gauges (read from PostgreSQL and the broker at scrape time) are exported
from their own registries: in multiprocess mode the default export only
aggregates what the processes wrote to PROMETHEUS_MULTIPROC_DIR, which cannot
hold DB-derived values. Apps add their collectors in AppConfig.ready through
kimberly.hooks. The system gauges come first and need no database scope, so a
scrape still says `kimberly_postgres_up 0` when PostgreSQL is down.
"""

from __future__ import annotations

import hmac
import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django_prometheus.exports import ExportToDjangoView
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kimberly import rls
from kimberly.hooks import store_registry, system_registry

logger = logging.getLogger(__name__)


def _allowed(request: HttpRequest) -> bool:
    """With METRICS_TOKEN set, only a scrape that sends it as a bearer token
    (Prometheus: `authorization: {credentials: ...}`) reads the metrics: the
    web port is public wherever the platform routes all of it (Fly.io)."""
    token = settings.METRICS_TOKEN
    if not token:
        return True
    sent = request.headers.get("Authorization", "")
    return hmac.compare_digest(sent.encode(), f"Bearer {token}".encode())


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        return HttpResponse(
            "metrics need the scrape token\n",
            status=401,
            content_type="text/plain",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
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
