"""Error pages of the UI: a refused CSRF check explained in words, and the
site's 404 and 500 as pages on the UI's routes (JSON stays the answer on the
API's and to clients that ask for JSON)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

from kimberly.api.exceptions import json_404, json_500
from kimberly.middleware import API_PREFIX

# Routes whose clients are programs: their errors stay JSON.
_MACHINE_PREFIXES = (API_PREFIX, "/metrics", "/static/")
# The last resort when even the error page cannot be drawn (the database down,
# say): plain HTML with no template, no user and no session.
_BARE_500 = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>Error 500</title>"
    "<h1>Something went wrong on our side (500)</h1>"
    "<p>It has been logged; try again. (code: internal_error)</p></html>"
)


def _wants_page(request: HttpRequest) -> bool:
    if request.path_info.startswith(_MACHINE_PREFIXES):
        return False
    return "text/html" in request.headers.get("Accept", "") or not request.headers.get(
        "Accept"
    )


def _page(
    request: HttpRequest,
    status: int,
    message: str,
    code: str,
    *,
    anonymous: bool = False,
) -> HttpResponse:
    # render_to_string, not TemplateResponse: a 500 must not depend on the
    # middleware that failed. `anonymous`: the page shows no account (loading
    # the user reads the session and the users table, which may be what failed).
    context: dict[str, object] = {"status": status, "message": message, "code": code}
    if anonymous:
        context["user"] = None
    return HttpResponse(
        render_to_string("web/error.html", context, request), status=status
    )


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """Django's CSRF refusal, as a UI page, or to htmx the error fragment it
    shows beside the control (API calls never reach here: bearer tokens, no
    session, so DRF does not check CSRF)."""
    words = (
        "This form expired or came from another site. Reload the page and try again."
    )
    if request.headers.get("HX-Request"):
        fragment = render_to_string(
            "web/_error.html", {"message": words, "code": "csrf_failed"}, request
        )
        return HttpResponse(fragment, status=403)
    return _page(request, 403, words, "csrf_failed")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if not _wants_page(request):
        return json_404(request, exception)
    return _page(request, 404, "There is no page at this address.", "not_found")


def server_error(request: HttpRequest) -> HttpResponse:
    if not _wants_page(request):
        return json_500(request)
    try:
        return _page(
            request,
            500,
            "Something went wrong on our side. It has been logged; try again.",
            "internal_error",
            anonymous=True,
        )
    except Exception:  # noqa: BLE001 - the page itself failed: the bare one
        return HttpResponse(_BARE_500, status=500)
