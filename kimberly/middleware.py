"""Request id (taken from X-Request-ID when sane, else generated; echoed back),
the request's row-level-security frame, and the bound on a request's body."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve

from kimberly import rls
from kimberly.api.exceptions import error_body
from kimberly.logging import request_id_var

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
access_log = logging.getLogger("kimberly.access")


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        rid = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = rid  # type: ignore[attr-defined]
        token = request_id_var.set(rid)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = rid
            # Path only: the query string may carry user text.
            access_log.info(
                "request",
                extra={
                    "request_id": rid,
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
            return response
        finally:
            request_id_var.reset(token)


# urls.py mounts the admin here.
ADMIN_PREFIX = "/admin/"
API_PREFIX = "/v1/"
# Prometheus's scrape and the probes must answer while PostgreSQL does not
# (kimberly_postgres_up 0; liveness 200, readiness 503), so they get no frame
# here: opening one is a query. None of them reads a user's row (the scrape
# scopes its own reads: kimberly/metrics_view.py).
METRICS_PATH = "/metrics"
UNSCOPED_PATHS = frozenset(
    {METRICS_PATH, f"{API_PREFIX}health", f"{API_PREFIX}health/ready"}
)


class RlsMiddleware:
    """Each request starts seeing no row (kimberly/rls.py); the bearer token's
    user is bound once it is known (users/authentication.py) and the frame
    restores what the connection had before. The admin site is for operators:
    it runs under maintenance (it checks is_staff itself and never shows a
    sensitive memory's text, memory/admin.py)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # path_info, what URL routing matches: `path` carries SCRIPT_NAME, which
        # a proxy (or a forwarded header) sets, and must not choose a scope.
        path = request.path_info
        if path in UNSCOPED_PATHS:
            return self.get_response(request)
        if path.startswith(ADMIN_PREFIX):
            scope = rls.maintenance("admin site: staff sessions")
        else:
            scope = rls.no_scope()
        with scope:
            if not path.startswith((ADMIN_PREFIX, API_PREFIX)):
                _bind_session_user(request)
            return self.get_response(request)


def _bind_session_user(request: HttpRequest) -> None:
    """The web UI's session: its user is found by the id the session holds (no
    scope can see a row before anyone is known), then bound as the acting user
    for the rest of the request. The API ignores sessions (bearer tokens only)."""
    with rls.maintenance("web session: load the signed-in user"):
        user = request.user
        signed_in = bool(user.is_authenticated)  # loads the lazy user here
    if signed_in and user.pk is not None:
        rls.bind_user(user.pk)


# A view that takes an upload names the setting that bounds it (`upload_limit`);
# every other route takes at most DATA_UPLOAD_MAX_MEMORY_SIZE (JSON or a form),
# plus room for a multipart envelope.
ENVELOPE_BYTES = 64 * 1024
UPLOAD_LIMIT_ATTR = "upload_limit_setting"


def upload_limit(setting: str) -> Callable[[Any], Any]:
    """Mark a view function or APIView class as taking bodies up to `setting`."""

    def mark(view: Any) -> Any:
        setattr(view, UPLOAD_LIMIT_ATTR, setting)
        return view

    return mark


def body_limit(path: str) -> int:
    """The longest body `path` takes (its view's upload setting, else the JSON one)."""
    setting = "DATA_UPLOAD_MAX_MEMORY_SIZE"
    try:
        func = resolve(path).func
    except Resolver404:
        func = None
    for holder in (func, getattr(func, "view_class", None)):
        setting = getattr(holder, UPLOAD_LIMIT_ATTR, None) or setting
    return int(getattr(settings, setting)) + ENVELOPE_BYTES


class BodyLimitMiddleware:
    """413 for a body longer than its route may take, before anything reads it:
    the CSRF check reads a form's whole body (to disk past 2.5 MB), for anyone,
    signed in or not. The services check the exact limits again."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        # Every bound is a setting plus the envelope: only a longer body needs
        # its route's (resolved, then, to find its view).
        if length > ENVELOPE_BYTES and length > (
            limit := body_limit(request.path_info)
        ):
            return JsonResponse(
                error_body(
                    "payload_too_large",
                    "The request body is larger than this address accepts.",
                    413,
                    {"size_bytes": length, "max_bytes": limit},
                ),
                status=413,
            )
        return self.get_response(request)
