"""One exception handler: every error body is {error, message, code, details}."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response

from kimberly.api.errors import ApplicationError

logger = logging.getLogger(__name__)

# DRF's own exceptions mapped to our stable codes.
_DRF_CODES: dict[type[drf.APIException], str] = {
    drf.ValidationError: "validation_error",
    drf.ParseError: "malformed_request",
    drf.AuthenticationFailed: "authentication_failed",
    drf.NotAuthenticated: "not_authenticated",
    drf.PermissionDenied: "permission_denied",
    drf.NotFound: "not_found",
    drf.MethodNotAllowed: "method_not_allowed",
    drf.NotAcceptable: "not_acceptable",
    drf.UnsupportedMediaType: "unsupported_media_type",
    drf.Throttled: "rate_limited",
}


def error_body(
    error: str, message: str, status: int, details: Any = None
) -> dict[str, Any]:
    return {
        "error": error,
        "message": message,
        "code": status,
        "details": details or {},
    }


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ApplicationError):
        return Response(
            error_body(exc.code, exc.message, exc.status, exc.details),
            status=exc.status,
            headers=exc.headers,
        )
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = drf.PermissionDenied()
    if not isinstance(exc, drf.APIException):
        return None  # a bug: let Django log it and answer 500 (see handler500)

    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
    wait = getattr(exc, "wait", None)
    if wait is not None:
        headers["Retry-After"] = str(int(wait))

    code = next((c for k, c in _DRF_CODES.items() if isinstance(exc, k)), "error")
    if isinstance(exc, drf.ValidationError):
        message = "The request is not valid."
        details: Any = {"fields": exc.detail}
    else:
        message = str(exc.detail)
        details = {}
        if wait is not None:
            details = {"retry_after": int(wait)}
    # 401 vs 403: DRF answers 403 when no WWW-Authenticate header can be offered;
    # our bearer auth always offers one, so missing credentials are a 401.
    return Response(
        error_body(code, message, exc.status_code, details),
        status=exc.status_code,
        headers=headers,
    )


def json_404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(
        error_body("not_found", f"No route for {request.path}.", 404), status=404
    )


def json_400(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """Requests Django refuses before any view runs (e.g. a body over the limit)."""
    if isinstance(exception, RequestDataTooBig):
        return JsonResponse(
            error_body(
                "request_too_large",
                "The request body is larger than this server accepts.",
                413,
                {"max_bytes": settings.DATA_UPLOAD_MAX_MEMORY_SIZE},
            ),
            status=413,
        )
    return JsonResponse(
        error_body("bad_request", "The request is not valid.", 400), status=400
    )


def json_500(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        error_body("internal_error", "Something went wrong on our side.", 500),
        status=500,
    )
