"""Tonight's forecast on the memory screen: what a meditation run would promote,
expire, archive or purge, each with its reason and the score's signals, as GET
/v1/memory/forecast answers (the same memory.meditation.meditation_forecast,
which computes a run and rolls it back: nothing changes). Loaded on demand, so
the screen's first render does not pay for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.http import require_GET

from memory import meditation, selectors
from memory.models import ScoreRecord
from users.models import User
from users.preferences import SIGNALS
from web.forms import ForecastForm, parse
from web.forms_settings import WeightsForm
from web.presenters import preview
from web.views.base import render, user_view

# Decisions shown per page of the panel (the API pages them as well).
FORECAST_PAGE = 50
# The signals' names as the Settings screen calls them.
SIGNAL_LABELS = {name: str(WeightsForm.base_fields[name].label) for name in SIGNALS}
CHANGES = ("promoted", "expired", "archived", "purged")


@dataclass(frozen=True)
class Decision:
    memory_id: str
    decision: str
    tier: str
    reason: str
    score: float
    previous_score: float
    signals: list[tuple[str, float]]  # (label, value); none for an archived item
    preview: str | None  # None: no longer visible (deleted, or hidden)


def _decision(record: ScoreRecord, previews: dict[Any, str]) -> Decision:
    signals = [
        (SIGNAL_LABELS[name], value)
        for name in SIGNALS
        if (value := getattr(record, name)) is not None
    ]
    return Decision(
        memory_id=f"mem_{record.item_id}",
        decision=record.decision,
        tier=record.tier,
        reason=record.reason,
        score=record.score,
        previous_score=record.previous_score,
        signals=signals,
        preview=previews.get(record.item_id),
    )


@require_GET
@user_view
def memory_forecast(request: HttpRequest, user: User) -> HttpResponse:
    data = parse(ForecastForm, request.GET)
    forecast = meditation.meditation_forecast(user=user, as_of=data["as_of"])
    run = forecast.run
    page = Paginator(forecast.decisions, FORECAST_PAGE).get_page(data["page"] or 1)
    items = selectors.memories_by_id(
        user=user, item_ids=[r.item_id for r in page.object_list]
    )
    previews = {pk: preview(item.content) for pk, item in items.items()}
    more = ""
    if page.has_next():
        more = urlencode({"as_of": run.as_of.isoformat(), "page": page.number + 1})
    counts = {name: getattr(run, name) for name in CHANGES}
    total = sum(counts.values())
    context = {
        "run": run,
        "counts": counts,
        "total": total,
        "weights": [(SIGNAL_LABELS[n], run.weights.get(n)) for n in SIGNALS],
        "decisions": [_decision(r, previews) for r in page.object_list],
        "page": page,
        "more": more,
    }
    said = f"Forecast: {total} change{'' if total == 1 else 's'} tonight." + (
        "" if page.number == 1 else f" Page {page.number}."
    )
    return render(request, "web/memory/_forecast.html", context, said=said)


urlpatterns = [
    path("memory/forecast", memory_forecast, name="memory-forecast"),
]
