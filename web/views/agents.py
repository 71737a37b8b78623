"""The Agents screen: cards with risk, permissions and the user's switch; a
task run with a preview of its memory reads and writes, then commit; the task
history with status and trace; reminders and the calendar (.ics).

Each view parses its input, makes one call into agents' services or
selectors (the ones the /v1/agents API calls), and renders a page or an htmx
fragment. Tasks run on the agents' Celery worker: the task panel polls its
own URL while the task waits or runs.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.http import require_GET, require_POST

from agents import selectors, services
from agents.services import reminders as reminder_services
from agents.services import tasks as task_services
from kimberly.context import context_from_request
from users.models import User
from web.agent_presenters import agent_card, task_said, task_view
from web.forms import AgentRunForm, AgentSwitchForm, parse
from web.views.base import render, user_view

HISTORY_SIZE = 20
LIST_SIZE = 50


def _lists(user: User) -> dict[str, Any]:
    """The task history, the reminders and the events, as the page shows them."""
    tasks = selectors.tasks_for(user=user)[:HISTORY_SIZE]
    return {
        "history": [task_view(t, full=False) for t in tasks],
        "reminders": list(selectors.reminders_for(user=user)[:LIST_SIZE]),
        "events": list(selectors.events_for(user=user)[:LIST_SIZE]),
        "history_size": HISTORY_SIZE,
        "list_size": LIST_SIZE,
    }


@require_GET
@user_view
def agents_page(request: HttpRequest, user: User) -> HttpResponse:
    context = {
        "section": "agents",
        "cards": [agent_card(s) for s in selectors.agent_states(user=user)],
        "agent_choices": AgentRunForm.base_fields["agent"].choices,  # type: ignore[attr-defined]
        "task_max_chars": settings.AGENT_TASK_TEXT_MAX_CHARS,
        **_lists(user),
    }
    return render(request, "web/agents/page.html", context)


@require_POST
@user_view
def agent_switch(request: HttpRequest, user: User, name: str) -> HttpResponse:
    """The user's own switch of one agent: the card again."""
    enabled = parse(AgentSwitchForm, request.POST)["enabled"]
    switch = services.user_agent_switch_set(
        ctx=context_from_request(request), user=user, agent=name, enabled=enabled
    )
    state = selectors.agent_state(name=name, user=user)
    assert state is not None
    said = f"The {name} agent is {'on' if enabled else 'off'} for you."
    cancelled = getattr(switch, "cancelled", 0)
    if cancelled:
        said += f" {cancelled} waiting task{'s' if cancelled != 1 else ''} cancelled."
    context = {"card": agent_card(state), "focus_card": True}
    return render(request, "web/agents/_card.html", context, said=said)


def _panel(
    request: HttpRequest, user: User, task: Any, *, said: str = "", focus: str = ""
) -> HttpResponse:
    """The task panel; once the task no longer waits, the lists beside it are
    refreshed too (out of band), since its writes may have changed them."""
    view = task_view(task)
    context: dict[str, Any] = {"t": view, "focus": focus}
    if not view.waiting:
        context.update(_lists(user), oob=True)
    return render(request, "web/agents/_task.html", context, said=said or None)


@require_POST
@user_view
def task_run(request: HttpRequest, user: User) -> HttpResponse:
    data = parse(AgentRunForm, request.POST)
    task = task_services.task_submit(
        ctx=context_from_request(request),
        user=user,
        task=data["task"],
        agent=data["agent"] or None,
        preview=data["preview"],
    )
    what = "Previewing" if data["preview"] else "Running"
    return _panel(request, user, task, said=f"{what} with the {task.agent} agent…")


@require_GET
@user_view
def task_detail(request: HttpRequest, user: User, task_id: str) -> HttpResponse:
    """The panel of one task. `?watch=1` is the panel polling its own task:
    when it stops waiting, that is announced and the next control focused."""
    task = selectors.task_get(user=user, task_id=task_id)
    view = task_view(task)
    if request.GET.get("watch") and not view.waiting:
        focus = "commit" if view.can_commit else "title"
        return _panel(request, user, task, said=task_said(view), focus=focus)
    return _panel(request, user, task, focus="title")


@require_POST
@user_view
def task_commit(request: HttpRequest, user: User, task_id: str) -> HttpResponse:
    task = selectors.task_get(user=user, task_id=task_id)
    task = task_services.task_commit(
        ctx=context_from_request(request), user=user, task=task
    )
    return _panel(request, user, task, said="Committing the plan…", focus="title")


@require_POST
@user_view
def task_cancel(request: HttpRequest, user: User, task_id: str) -> HttpResponse:
    task = selectors.task_get(user=user, task_id=task_id)
    task = task_services.task_cancel(ctx=context_from_request(request), task=task)
    return _panel(request, user, task, said="Task cancelled.", focus="title")


@require_POST
@user_view
def reminder_cancel(request: HttpRequest, user: User, reminder_id: str) -> HttpResponse:
    rem = selectors.reminder_get(user=user, reminder_id=reminder_id)
    rem = reminder_services.reminder_cancel(
        ctx=context_from_request(request), reminder=rem
    )
    context = {"r": rem, "focus_reminder": True}
    return render(
        request, "web/agents/_reminder.html", context, said="Reminder cancelled."
    )


@require_GET
@user_view
def calendar(request: HttpRequest, user: User) -> HttpResponse:
    response = HttpResponse(
        selectors.calendar_for(user=user), content_type="text/calendar"
    )
    response["Content-Disposition"] = 'attachment; filename="kimberly.ics"'
    return response


urlpatterns = [
    path("agents", agents_page, name="agents"),
    path("agents/run", task_run, name="agents-run"),
    path("agents/calendar.ics", calendar, name="agents-calendar"),
    path("agents/switch/<str:name>", agent_switch, name="agents-switch"),
    path("agents/tasks/<str:task_id>", task_detail, name="agents-task"),
    path("agents/tasks/<str:task_id>/commit", task_commit, name="agents-commit"),
    path("agents/tasks/<str:task_id>/cancel", task_cancel, name="agents-cancel"),
    path(
        "agents/reminders/<str:reminder_id>/cancel",
        reminder_cancel,
        name="agents-reminder-cancel",
    ),
]
