"""Sign in, sign up and sign out with a session; password change and reset are
Django's own views with our templates (web/urls.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth import login as session_login
from django.contrib.auth import logout as session_logout
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.views import INTERNAL_RESET_SESSION_TOKEN
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, resolve_url
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from kimberly import rls
from kimberly.api.ratelimit import rate_limit_hit
from kimberly.context import request_meta
from users import services
from users.models import User, normalize_email
from web.forms import LoginForm, parse
from web.views.base import client_redirect, is_htmx, public_view, render


def _next_url(request: HttpRequest) -> str:
    """Where to go after signing in: `next` when it is a page of this site."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return resolve_url("web:home")


def _signed_in(request: HttpRequest) -> HttpResponse:
    url = _next_url(request)
    return client_redirect(url) if is_htmx(request) else redirect(url)


def _credentials_page(
    request: HttpRequest,
    template: str,
    service: Callable[..., User],
) -> HttpResponse:
    """GET: the form; POST: `service` checks (or registers) the credentials,
    then a session opens."""
    if request.method == "POST":
        data = parse(LoginForm, request.POST)
        user = service(
            email=data["email"], password=data["password"], meta=request_meta(request)
        )
        # A fresh session: nothing of a signed-out one (a deletion receipt's
        # token, its one-day expiry) passes to the account signing in.
        request.session.flush()
        with rls.acting_user(user.pk):  # the login writes last_login to its row
            session_login(request, user)
        return _signed_in(request)
    return render(request, template, {"next": _next_url(request)})


@public_view
def login_page(request: HttpRequest) -> HttpResponse:
    return _credentials_page(request, "web/login.html", services.user_authenticate)


@public_view
def signup_page(request: HttpRequest) -> HttpResponse:
    return _credentials_page(request, "web/signup.html", services.user_register)


def reset_limited(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Django's password-reset form, its requests limited per IP and per email
    (429 rate_limited, shown like any refusal)."""

    @public_view
    def wrapped(request: HttpRequest) -> HttpResponse:
        if request.method == "POST":
            window = settings.LOGIN_RATE_WINDOW_SECONDS
            email = normalize_email(str(request.POST.get("email", "")))[:254]
            for scope, ident in (
                ("password_reset_ip", request_meta(request).ip),
                ("password_reset_email", email),
            ):
                rate_limit_hit(
                    scope=scope,
                    ident=ident,
                    limit=settings.PASSWORD_RESET_RATE,
                    window_seconds=window,
                )
        return view(request)

    return wrapped


@require_POST
def logout_page(request: HttpRequest) -> HttpResponse:
    session_logout(request)
    return redirect("web:home")


def _password_set(view: Any, form: Any, how: str) -> None:
    """The new password through users.services: it revokes the API tokens and audits."""
    services.user_password_set(
        user=form.user,
        password=form.cleaned_data["new_password1"],
        how=how,
        meta=request_meta(view.request),
    )


class PasswordChange(auth_views.PasswordChangeView):
    """Django's form and checks; the new password through users.services (which
    revokes the API tokens and audits), and this session kept signed in."""

    def form_valid(self, form: Any) -> HttpResponse:
        _password_set(self, form, "change")
        update_session_auth_hash(self.request, form.user)
        return HttpResponseRedirect(self.get_success_url())


class PasswordResetConfirm(auth_views.PasswordResetConfirmView):
    """As PasswordChange, for a reset link (the link's token has been checked)."""

    def form_valid(self, form: Any) -> HttpResponse:
        _password_set(self, form, "reset")
        del self.request.session[INTERNAL_RESET_SESSION_TOKEN]
        return HttpResponseRedirect(self.get_success_url())
