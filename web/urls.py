"""The UI's pages and fragments (mounted at / by kimberly/urls.py)."""

from collections.abc import Callable
from typing import Any

from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.urls import include, path, reverse_lazy
from django.views import View

from kimberly import rls
from users.models import User
from web import urls_settings
from web.views import (
    agents,
    auth,
    memory,
    memory_files,
    memory_forecast,
    memory_imports,
    metrics,
    pages,
)
from web.views.base import user_view

app_name = "web"


def _password(view: type[View], template: str, **kwargs: Any) -> Callable[..., Any]:
    return view.as_view(template_name=f"web/password/{template}.html", **kwargs)


def _by_token(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Password reset, signed out: the account is found by its email (the form)
    or by the link's id and token, before anyone is known to row-level security."""

    def wrapped(request: HttpRequest, **kwargs: Any) -> HttpResponse:
        with rls.maintenance("password reset: the email or the link's token decides"):
            response = view(request, **kwargs)
            if hasattr(response, "render"):
                response.render()  # while the account is still visible
            return response

    return wrapped


def _signed_in(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Django's own password-change views, through the UI's one door."""

    @user_view
    def wrapped(request: HttpRequest, user: User, **kwargs: Any) -> HttpResponse:
        return view(request, **kwargs)

    return wrapped


password = [
    path(
        "password/change",
        _signed_in(
            _password(
                auth.PasswordChange,
                "change_form",
                success_url=reverse_lazy("web:password_change_done"),
            )
        ),
        name="password_change",
    ),
    path(
        "password/change/done",
        _signed_in(_password(auth_views.PasswordChangeDoneView, "change_done")),
        name="password_change_done",
    ),
    path(
        "password/reset",
        auth.reset_limited(
            _by_token(
                _password(
                    auth_views.PasswordResetView,
                    "reset_form",
                    email_template_name="web/password/reset_email.txt",
                    subject_template_name="web/password/reset_subject.txt",
                    success_url=reverse_lazy("web:password_reset_done"),
                )
            )
        ),
        name="password_reset",
    ),
    path(
        "password/reset/sent",
        _password(auth_views.PasswordResetDoneView, "reset_done"),
        name="password_reset_done",
    ),
    path(
        "password/reset/<uidb64>/<token>",
        _by_token(
            _password(
                auth.PasswordResetConfirm,
                "reset_confirm",
                success_url=reverse_lazy("web:password_reset_complete"),
            )
        ),
        name="password_reset_confirm",
    ),
    path(
        "password/reset/complete",
        _password(auth_views.PasswordResetCompleteView, "reset_complete"),
        name="password_reset_complete",
    ),
]

memory_urls = [
    path("memory", memory.memory_page, name="memory"),
    path("memory/list", memory.memory_list, name="memory-list"),
    path("memory/add", memory.memory_add, name="memory-add"),
    path("memory/bulk", memory.memory_bulk, name="memory-bulk"),
    # before memory/<id>: "documents", "imports" and "forecast" are not ids
    *memory_files.urlpatterns,
    *memory_imports.urlpatterns,
    *memory_forecast.urlpatterns,
    path("memory/<str:memory_id>", memory.memory_detail, name="memory-detail"),
    path("memory/<str:memory_id>/edit", memory.memory_edit, name="memory-edit"),
    path("memory/<str:memory_id>/revert", memory.memory_revert, name="memory-revert"),
    path("memory/<str:memory_id>/delete", memory.memory_delete, name="memory-delete"),
    path(
        "memory/<str:memory_id>/<str:action>",
        memory.memory_action,
        name="memory-action",
    ),
]

urlpatterns = [
    path("", pages.home, name="home"),
    path("login", auth.login_page, name="login"),
    path("signup", auth.signup_page, name="signup"),
    path("logout", auth.logout_page, name="logout"),
    *password,
    *memory_urls,
    path("", include("web.urls_chat")),
    *agents.urlpatterns,
    *metrics.urlpatterns,
    *urls_settings.urlpatterns,
]
