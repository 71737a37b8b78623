"""OpenTelemetry traces, behind settings.OTEL_ENABLED (off by default).

When on, each process exports its spans over OTLP/HTTP: Django's requests,
Celery's tasks (the producer's publish and the worker's run, linked), every SQL
statement (psycopg) and every Redis command. The exporter reads the standard
variables itself: OTEL_EXPORTER_OTLP_ENDPOINT (the collector's base URL;
/v1/traces is appended) or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (the full URL),
OTEL_EXPORTER_OTLP_HEADERS, OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES,
OTEL_TRACES_SAMPLER. Without a service name each process calls itself
kimberly-<role> (web, worker, beat).

No span carries what users wrote. SQL is recorded as the statement text, which
holds placeholders (parameters are not captured; sqlcommenter is off); Redis
commands are recorded as the command name with `?` for each argument (the
instrumentation's own sanitising); Celery spans name the task, never its
arguments; and the query string, which the web UI's search and filters fill with
user text, is cut from the request's URL attributes before a span is exported.

Set up once per process, after any fork: wsgi.py for the web (gunicorn imports
it in each worker), worker_process_init and beat_init for Celery
(kimberly/celery.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.util.types import Attributes

logger = logging.getLogger(__name__)

# Attributes whose value is a URL or a request target: kept without the query.
_URL_ATTRIBUTES = ("http.url", "url.full", "http.target")
# Attributes that are nothing but the query string: dropped.
_QUERY_ATTRIBUTES = ("url.query",)

_lock = threading.Lock()
_provider: TracerProvider | None = None


def setup(role: str, exporter: SpanExporter | None = None) -> TracerProvider | None:
    """Install the tracer provider and the instrumentations, once per process;
    None when tracing is off. `exporter` replaces OTLP/HTTP (tests)."""
    global _provider
    if not settings.OTEL_ENABLED:
        return None
    with _lock:
        if _provider is not None:
            return _provider
        provider = TracerProvider(resource=_resource(role))
        provider.add_span_processor(QueryFreeSpanProcessor(exporter or _otlp()))
        trace.set_tracer_provider(provider)
        _instrument()
        _provider = provider
    logger.info("tracing on", extra={"role": role})
    return provider


def _resource(role: str) -> Resource:
    detected = Resource.create({"kimberly.role": role})
    name = str(detected.attributes.get(SERVICE_NAME, ""))
    if name.startswith("unknown_service"):  # neither OTEL_SERVICE_NAME nor attrs
        detected = detected.merge(Resource({SERVICE_NAME: f"kimberly-{role}"}))
    return detected


def _otlp() -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter,
    )

    return OTLPSpanExporter()  # endpoint, headers, timeout: OTEL_EXPORTER_OTLP_*


def _instrument() -> None:
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    DjangoInstrumentor().instrument(is_sql_commentor_enabled=False)
    PsycopgInstrumentor().instrument(enable_commenter=False, capture_parameters=False)
    RedisInstrumentor().instrument()
    CeleryInstrumentor().instrument()


class QueryFreeSpanProcessor(BatchSpanProcessor):
    """Batches spans for the exporter, each without its URL's query string."""

    def on_end(self, span: ReadableSpan) -> None:
        super().on_end(without_query(span))


def without_query(span: ReadableSpan) -> ReadableSpan:
    attributes = dict(span.attributes or {})
    if not any(k in attributes for k in (*_URL_ATTRIBUTES, *_QUERY_ATTRIBUTES)):
        return span
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_cut(attributes),
        events=span.events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _cut(attributes: Mapping[str, Any]) -> Attributes:
    out = {k: v for k, v in attributes.items() if k not in _QUERY_ATTRIBUTES}
    for key in _URL_ATTRIBUTES:
        if isinstance(value := out.get(key), str):
            out[key] = value.split("?", 1)[0]
    return out


def shutdown() -> None:
    """Export what is still batched (a gunicorn worker on its way out)."""
    if _provider is not None:
        _provider.shutdown()
