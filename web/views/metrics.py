"""The Metrics screen (/insights): storage per tier now and at each of the
last meditations, and the meditation history (processed, promoted, archived,
purged per night) as SVG charts drawn on the server; the last meditation and
its duration. Reads only, through memory's selectors."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.utils.timezone import localtime
from django.views.decorators.http import require_GET

from memory import selectors
from memory.constants import Tier
from users.models import User
from web.charts import Series, bar_chart, line_chart
from web.presenters import quota_bars
from web.views.base import render, user_view

NIGHTS = 30
COUNTS = ("processed", "promoted", "archived", "purged")


def _labels(user: User, nights: list[selectors.MeditationNight]) -> list[str]:
    """Each night's date where the user lives (and the time, if a day had two)."""
    zone = ZoneInfo(user.time_zone or "UTC")
    local = [localtime(n.finished_at, zone) for n in nights]
    days = [f"{t:%d %b}" for t in local]
    if len(set(days)) == len(days):
        return days
    return [f"{t:%d %b %H:%M}" for t in local]


@require_GET
@user_view
def metrics_page(request: HttpRequest, user: User) -> HttpResponse:
    nights = selectors.meditation_history(user=user, limit=NIGHTS)
    metrics = selectors.memory_metrics(user=user)
    labels = _labels(user, nights)
    context = {
        "section": "metrics",
        "quotas": quota_bars(metrics.tiers),
        "nights": nights,
        "last": nights[-1] if nights else None,
        "storage": line_chart(
            "Storage per tier at each meditation",
            labels,
            [Series(t, [n.storage.get(t, 0) for n in nights]) for t in Tier.values],
            unit="bytes",
        )
        if nights
        else None,
        "history": bar_chart(
            "Meditation history",
            labels,
            [Series(c, [getattr(n, c) for n in nights]) for c in COUNTS],
        )
        if nights
        else None,
        "night_count": NIGHTS,
    }
    return render(request, "web/metrics/page.html", context)


urlpatterns = [path("insights", metrics_page, name="metrics")]
