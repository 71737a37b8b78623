"""The one door of every UI view: who is acting, and how a refusal is shown.

`user_view` is the only way a view reaches user data: it requires a session,
passes the signed-in user in, and turns a domain error (ApplicationError) into
words next to the control that caused it. Row-level security already acts as
the session's user (kimberly.middleware.RlsMiddleware binds them), so a view
sees that user's rows and no one else's.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, Concatenate, ParamSpec

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url
from django.template.response import TemplateResponse
from django_htmx.http import trigger_client_event

from kimberly.api.errors import ApplicationError
from users.models import User

P = ParamSpec("P")
UserView = Callable[Concatenate[HttpRequest, User, P], HttpResponse]
PublicView = Callable[Concatenate[HttpRequest, P], HttpResponse]


def is_htmx(request: HttpRequest) -> bool:
    return bool(getattr(request, "htmx", False))


def announce(response: HttpResponse, message: str, *, error: bool = False) -> None:
    """Says `message` in the page's aria-live region (static/web/app.js). (Not a
    key named "error": htmx logs any event detail that has one.)"""
    level = "error" if error else "info"
    trigger_client_event(response, "announce", {"message": message, "level": level})


def render(
    request: HttpRequest,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
    said: str | None = None,
) -> HttpResponse:
    """A page or fragment; `said` is announced to screen readers after the swap."""
    response = TemplateResponse(request, template, context or {}, status=status)
    response.render()
    if said:
        announce(response, said)
    return response


def error_context(exc: ApplicationError) -> dict[str, Any]:
    """What web/_error.html and web/error.html show of a refusal."""
    return {
        "status": exc.status,
        "message": exc.message,
        "code": exc.code,
        "fields": _field_messages(exc.details),
    }


def error_response(request: HttpRequest, exc: ApplicationError) -> HttpResponse:
    """The error in words with its stable code: a fragment for htmx (app.js
    swaps it into the error slot beside the control that sent the request),
    else a page."""
    context = error_context(exc)
    if is_htmx(request):
        response = render(request, "web/_error.html", context, status=exc.status)
        announce(response, f"Error: {exc.message}", error=True)
    else:
        response = render(request, "web/error.html", context, status=exc.status)
    for name, value in exc.headers.items():
        response[name] = value
    return response


def _field_messages(details: dict[str, Any]) -> list[str]:
    """The per-field complaints of a validation error, as lines of text."""
    fields = details.get("fields")
    if isinstance(fields, dict):
        return [f"{name}: {' '.join(map(str, msgs))}" for name, msgs in fields.items()]
    if isinstance(details.get("password"), list):  # weak_password
        return [str(m) for m in details["password"]]
    return []


def public_view(view: PublicView[P]) -> PublicView[P]:
    """A view for anyone (sign-in, sign-up): domain errors shown like user_view's."""

    @wraps(view)
    def wrapped(
        request: HttpRequest, *args: P.args, **kwargs: P.kwargs
    ) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except ApplicationError as exc:
            return error_response(request, exc)

    return wrapped


def user_view(view: UserView[P]) -> PublicView[P]:
    """A view of the signed-in user's data: `view(request, user, ...)`.

    Without a session: a page redirects to sign-in (and back), an htmx request
    is told to load the sign-in page (HX-Redirect), never a fragment."""

    @wraps(view)
    def wrapped(
        request: HttpRequest, *args: P.args, **kwargs: P.kwargs
    ) -> HttpResponse:
        user = request.user
        if not isinstance(user, User) or not user.is_authenticated:
            if is_htmx(request):
                response = HttpResponse(status=401)
                response["HX-Redirect"] = resolve_url("web:login")
                return response
            return redirect_to_login(request.get_full_path())
        try:
            return view(request, user, *args, **kwargs)
        except ApplicationError as exc:
            return error_response(request, exc)

    return wrapped


def client_redirect(url: str) -> HttpResponse:
    """After an htmx form: load `url` as a new page."""
    response = HttpResponse(status=204)
    response["HX-Redirect"] = url
    return response
