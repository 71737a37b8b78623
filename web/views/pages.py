"""The dashboard (every screen of issue 13 is built; no placeholders are left)."""

from __future__ import annotations

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
