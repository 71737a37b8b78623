"""Settings: profile and time zone, meditation weights and goals, embeddings,
consents with their history, and API tokens. Each view parses its form, makes
one call into users' or memory's services, and renders the section again as an
htmx fragment (web/templates/web/settings/). Export and account deletion are in
web/views/privacy.py."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET, require_POST

from kimberly.api.errors import NotFound
from kimberly.context import context_from_request
from memory import selectors as memory_selectors
from memory import services as memory_services
from users import consents, selectors, services
from users.models import User
from users.preferences import DEFAULT_WEIGHTS, SIGNALS
from web.forms import parse, tag_list
from web.forms_settings import GoalForm, MemorySettingsForm, ProfileForm, WeightsForm
from web.views import privacy
from web.views.base import render, user_view

# What each consent lets Kimberly do, in the words the page uses.
PURPOSES: dict[str, tuple[str, str]] = {
    consents.Purpose.SENSITIVE_MEMORY: (
        "Sensitive memories",
        "Keep memories you mark sensitive (sealed with your own key).",
    ),
    consents.Purpose.MODEL_CONTEXT: (
        "Sensitive memories in chat",
        "Send sensitive memories to the language model when they help a reply.",
    ),
    consents.Purpose.AGENT_ACCESS: (
        "Sensitive memories for agents",
        "Let agents read sensitive memories while they run a task.",
    ),
    consents.Purpose.TELEMETRY: (
        "Telemetry",
        "Share anonymous usage counts that help improve Kimberly.",
    ),
}
assert set(PURPOSES) == set(consents.Purpose.values)
CONSENT_SOURCE = "web"


def _profile(user: User) -> dict[str, Any]:
    return {"time_zones": services.time_zone_names()}


def _weights(user: User) -> dict[str, Any]:
    weights = user.meditation_weights or DEFAULT_WEIGHTS
    form = WeightsForm()
    return {
        "weights": [
            {"name": name, "label": form.fields[name].label, "value": weights[name]}
            for name in SIGNALS
        ],
        "weights_default": not user.meditation_weights,
    }


def _goals(user: User) -> dict[str, Any]:
    return {
        "goals": list(memory_selectors.goals_for(user=user)),
        "max_goals": memory_services.MAX_GOALS,
    }


def _consents(user: User) -> dict[str, Any]:
    return {
        "consents": [
            {
                "state": s,
                "title": PURPOSES[s.purpose][0],
                "about": PURPOSES[s.purpose][1],
            }
            for s in consents.consents_of(user)
        ]
    }


def _tokens(user: User, issued: str = "") -> dict[str, Any]:
    return {"tokens": list(selectors.api_tokens_for(user=user)), "issued": issued}


@require_GET
@user_view
def settings_page(request: HttpRequest, user: User) -> HttpResponse:
    context = {
        "section": "settings",
        **_profile(user),
        **_weights(user),
        **_goals(user),
        **_consents(user),
        **_tokens(user),
        **privacy.exports_context(user),
    }
    return render(request, "web/settings/page.html", context)


def _update(request: HttpRequest, user: User, **values: Any) -> None:
    services.user_update_settings(
        ctx=context_from_request(request), user=user, **values
    )


@require_POST
@user_view
def profile_save(request: HttpRequest, user: User) -> HttpResponse:
    _update(request, user, **parse(ProfileForm, request.POST))
    context = _profile(user)
    return render(request, "web/settings/_profile.html", context, said="Profile saved.")


@require_POST
@user_view
def weights_save(request: HttpRequest, user: User) -> HttpResponse:
    _update(request, user, meditation_weights=parse(WeightsForm, request.POST))
    context = _weights(user)
    said = "Meditation weights saved (scaled to add up to 1)."
    return render(request, "web/settings/_weights.html", context, said=said)


@require_POST
@user_view
def memory_settings_save(request: HttpRequest, user: User) -> HttpResponse:
    _update(request, user, **parse(MemorySettingsForm, request.POST))
    said = "Memory settings saved."
    return render(request, "web/settings/_memory.html", {}, said=said)


@require_POST
@user_view
def goal_add(request: HttpRequest, user: User) -> HttpResponse:
    data = parse(GoalForm, request.POST)
    memory_services.goal_create(
        ctx=context_from_request(request),
        user=user,
        text=data["text"],
        tags=tag_list(data["tags"]),
    )
    context = {**_goals(user), "goals_added": True}
    return render(request, "web/settings/_goals.html", context, said="Goal added.")


@require_POST
@user_view
def goal_delete(request: HttpRequest, user: User, goal_id: int) -> HttpResponse:
    memory_services.goal_delete(
        ctx=context_from_request(request), user=user, goal_id=goal_id
    )
    context = {**_goals(user), "focus_heading": True}
    return render(request, "web/settings/_goals.html", context, said="Goal removed.")


@require_POST
@user_view
def consent_change(
    request: HttpRequest, user: User, purpose: str, action: str
) -> HttpResponse:
    """Grant or withdraw one purpose; its card again, the keyboard on the
    button that undoes it."""
    if action not in ("grant", "withdraw"):
        raise NotFound(f"No action {action}.")
    change = consents.consent_grant if action == "grant" else consents.consent_withdraw
    change(
        ctx=context_from_request(request),
        user=user,
        purpose=consents.purposes(purpose),
        source=CONSENT_SOURCE,
    )
    card = next(c for c in _consents(user)["consents"] if c["state"].purpose == purpose)
    said = (
        f"{card['title']}: consent {'granted' if action == 'grant' else 'withdrawn'}."
    )
    context = {"card": card, "focus": True}
    return render(request, "web/settings/_consent.html", context, said=said)


@require_POST
@user_view
def token_create(request: HttpRequest, user: User) -> HttpResponse:
    issued = services.api_token_create(ctx=context_from_request(request), user=user)
    said = "API token created. Copy it now: it is not shown again."
    context = _tokens(user, issued=issued.token)
    return render(request, "web/settings/_tokens.html", context, said=said)


@require_POST
@user_view
def token_revoke(request: HttpRequest, user: User, token_key: str) -> HttpResponse:
    services.api_token_revoke(
        ctx=context_from_request(request), user=user, token_key=token_key
    )
    context = {**_tokens(user), "focus_heading": True}
    return render(request, "web/settings/_tokens.html", context, said="Token revoked.")
