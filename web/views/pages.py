"""The dashboard, and the screens not built yet (honest placeholders)."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from memory import selectors
from users.models import User
from web.presenters import quota_bars
from web.views.auth import login_page
from web.views.base import render, user_view


def home(request: HttpRequest) -> HttpResponse:
    """`/`: the dashboard when signed in, else the sign-in page."""
    if request.user.is_authenticated:
        return dashboard(request)
    return login_page(request)


@user_view
def dashboard(request: HttpRequest, user: User) -> HttpResponse:
    metrics = selectors.memory_metrics(user=user)
    return render(
        request,
        "web/dashboard.html",
        {
            "section": "home",
            "quotas": quota_bars(metrics.tiers),
            "last_meditation": metrics.last_meditation,
            "embedding_enabled": metrics.embedding_enabled,
            "embedding_pending": metrics.embedding_pending,
        },
    )


# The screens of issue 13 that this slice does not build yet: what each will do.
PLACEHOLDERS = {
    "agents": (
        "Agents",
        "Cards per agent with their risk and permissions, runs with a preview "
        "of memory reads and writes, task history, reminders and calendar.",
    ),
    "metrics": (
        "Metrics",
        "Storage per tier over time and the history of nightly meditations.",
    ),
}


def placeholder(section: str) -> Callable[..., HttpResponse]:
    title, plan = PLACEHOLDERS[section]

    @user_view
    def view(request: HttpRequest, user: User) -> HttpResponse:
        return render(
            request,
            "web/placeholder.html",
            {"section": section, "title": title, "plan": plan},
        )

    view.__name__ = f"{section}_page"
    return view
