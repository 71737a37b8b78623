"""What every log line carries, and what none may carry.

Each line is JSON (settings LOGGING) with the id of what it belongs to: the
request's `request_id` (RequestIdMiddleware), or the Celery task's `task_id` and
`task_name` (kimberly/celery.py binds them around each task), and, when tracing
is on (kimberly/tracing.py), the current span's `trace_id` and `span_id`, so a
log line and its trace find each other in Loki and Tempo.

No line carries what users wrote. Our own log calls name ids and counts only;
the filter also scrubs what libraries attach: Celery logs each task's arguments
and return value (as the message's arguments and as an extra `data` field), and
Django's request and security loggers attach the request itself, whose text
would include the query string.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any

from opentelemetry import trace

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar(
    "request_id", default="-"
)
# (task id, task name) while a Celery task runs in this context
task_var: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "task", default=None
)

REDACTED = "[not logged]"
# Celery's task log records (received, succeeded, failed, retried): the fields
# that hold a task's arguments or its result.
_CELERY_CONTENT_FIELDS = ("args", "kwargs", "return_value", "argsrepr", "kwargsrepr")


def bind_task(task_id: str | None, task_name: str | None) -> None:
    task_var.set((task_id or "-", task_name or "-"))


def unbind_task() -> None:
    task_var.set(None)


class ContextFilter(logging.Filter):
    """Adds the ids (request, task, trace) and scrubs library-attached content."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        task = task_var.get()
        if task is not None and not hasattr(record, "task_id"):
            record.task_id, record.task_name = task
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            record.trace_id = format(span.trace_id, "032x")
            record.span_id = format(span.span_id, "016x")
        _scrub(record)
        return True


def _scrub(record: logging.LogRecord) -> None:
    request = getattr(record, "request", None)
    if request is not None and hasattr(request, "path"):
        # django.request / django.security: the method and path, no query string
        record.request = f"{getattr(request, 'method', '')} {request.path}".strip()
    if record.name.startswith("celery"):
        if isinstance(record.args, dict):
            record.args = _redacted(record.args)
        data = getattr(record, "data", None)
        if isinstance(data, dict):
            record.data = _redacted(data)


def _redacted(fields: dict[str, Any]) -> dict[str, Any]:
    return {
        k: REDACTED if k in _CELERY_CONTENT_FIELDS else v for k, v in fields.items()
    }
