"""Error pages of the UI: a refused CSRF check explained in words."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """Django's CSRF refusal, as a UI page (API calls never reach here: bearer
    tokens, no session, so DRF does not check CSRF)."""
    return TemplateResponse(
        request,
        "web/error.html",
        {
            "status": 403,
            "message": "This form expired or came from another site. "
            "Reload the page and try again.",
            "code": "csrf_failed",
        },
        status=403,
    ).render()
