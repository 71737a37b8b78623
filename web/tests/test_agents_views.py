"""The Agents screen through Django's test client: cards and switches, a task
previewed and committed (each execution run here through the agents'
execution service, as the worker runs it), errors beside their control,
reminders, the calendar download, and bob seeing nothing of alice's."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import icalendar
import pytest
from django.test import Client
from django.utils import timezone

from agents.models import AgentTask, Event, Reminder
from agents.services import execution
from memory.tests.factories import memory_for
from web.tests.conftest import HX, said, text_of

pytestmark = pytest.mark.django_db


def _post_run(client: Client, task: str, form: dict[str, Any]) -> Any:
    return client.post("/agents/run", {"task": task, **form}, **HX)


def _run(client: Client, task: str, **form: Any) -> AgentTask:
    r = _post_run(client, task, form)
    assert r.status_code == 200, text_of(r)
    return AgentTask.objects.latest("created_at")


def _refused(client: Client, task: str, status: int, **form: Any) -> str:
    r = _post_run(client, task, form)
    assert r.status_code == status, text_of(r)
    return text_of(r)


def _execute(task: AgentTask) -> str:
    """One execution of the task, as the agents worker runs its message."""
    row = AgentTask.objects.get(pk=task.pk)
    assert row.claim is not None, "the task was not handed to the broker"
    return execution.task_execute(task_id=str(row.pk), claim=str(row.claim))


def test_the_page_shows_a_card_per_agent_with_risk_permissions_and_switch(
    alice_web,
):
    page = text_of(alice_web.get("/agents"))
    for name, risk in [
        ("reminder", "low"),
        ("scheduler", "low"),
        ("researcher", "medium"),
        ("coder", "high"),
    ]:
        assert f'id="agent-{name}"' in page
        assert f"badge-risk-{risk}" in page
    assert '<span class="tag">code.exec</span>' in page
    assert page.count('role="switch" aria-checked="true"') == 4
    assert "Download the calendar (.ics)" in page


def test_turning_an_agent_off_refuses_its_tasks_beside_the_form(alice, alice_web):
    r = alice_web.post("/agents/switch/reminder", {"enabled": "false"}, **HX)
    assert r.status_code == 200
    assert 'aria-checked="false"' in text_of(r) and "Off for you" in text_of(r)
    assert said(r)["message"] == "The reminder agent is off for you."
    refused = _refused(
        alice_web, "remind me to call mom tomorrow at 9", 409, agent="reminder"
    )
    assert 'data-error-code="agent_disabled"' in refused
    assert not AgentTask.objects.exists()
    r = alice_web.post("/agents/switch/reminder", {"enabled": "true"}, **HX)
    assert 'aria-checked="true"' in text_of(r)
    unknown = alice_web.post("/agents/switch/nobody", {"enabled": "true"}, **HX)
    assert unknown.status_code == 404 and "unknown_agent" in text_of(unknown)


def test_a_reminder_previewed_then_committed(alice, alice_web):
    task = _run(
        alice_web, "remind me to water the plants tomorrow at 18:00", preview="on"
    )
    assert task.preview and task.agent == "reminder"
    waiting = text_of(alice_web.get(f"/agents/tasks/{task.public_id}?watch=1", **HX))
    assert 'hx-trigger="every 1s"' in waiting and "Waiting for the agent" in waiting

    assert _execute(task) == "previewed"
    r = alice_web.get(f"/agents/tasks/{task.public_id}?watch=1", **HX)
    shown = text_of(r)
    assert "every 1s" not in shown
    assert "Planned writes" in shown and "Remind you to water the plants" in shown
    assert "None: this task reads no memories." in shown
    assert 'id="task-commit"' in shown and "data-autofocus>Commit" in shown
    assert said(r)["message"] == "Preview ready: 1 planned write. Commit to apply."
    assert not Reminder.objects.exists()  # a preview changes nothing

    r = alice_web.post(f"/agents/tasks/{task.public_id}/commit", **HX)
    assert r.status_code == 200 and "every 1s" in text_of(r)
    assert _execute(task) == "succeeded"
    r = alice_web.get(f"/agents/tasks/{task.public_id}?watch=1", **HX)
    done = text_of(r)
    assert said(r)["message"] == "Task succeeded."
    (rem,) = Reminder.objects.filter(user=alice)
    assert rem.what == "water the plants"
    # The lists beside the panel are refreshed with it.
    assert (
        'id="reminders" class="card" aria-labelledby="reminders-title" hx-swap-oob'
        in done
    )
    assert f'id="reminder-{rem.public_id}"' in done
    assert "<strong>apply</strong>" in done  # the trace: parse, plan, apply
    again = alice_web.post(f"/agents/tasks/{task.public_id}/commit", **HX)
    assert again.status_code == 409 and "not_previewed" in text_of(again)


def test_a_preview_shows_the_memories_it_reads_and_withholds_a_stale_one(
    alice, alice_web
):
    item = memory_for(alice, "The plumber Marco charges 80 euros an hour")
    task = _run(
        alice_web,
        "what does the plumber charge",
        agent="researcher",
        preview="on",
    )
    assert _execute(task) == "previewed"
    shown = text_of(alice_web.get(f"/agents/tasks/{task.public_id}", **HX))
    assert f"<code>{item.public_id}</code>" in shown
    assert "Memory reads" in shown
    # The memory changes: the plan may no longer be committed.
    from memory.services import memory_update
    from memory.tests.factories import ctx_for

    memory_update(
        ctx=ctx_for(alice), user=alice, memory_id=item.public_id, content="changed"
    )
    stale = text_of(alice_web.get(f"/agents/tasks/{task.public_id}", **HX))
    assert 'data-error-code="plan_stale"' in stale and 'id="task-commit"' not in stale
    r = alice_web.post(f"/agents/tasks/{task.public_id}/commit", **HX)
    assert r.status_code == 409 and "plan_stale" in text_of(r)


def test_a_task_no_agent_fits_is_refused_in_words_with_its_code(alice_web):
    refused = _refused(alice_web, "xyzzy plugh", 400)
    assert 'data-error-code="no_agent_fits"' in refused
    empty = _refused(alice_web, "", 400)
    assert "validation_error" in empty and "Task:" in empty


def test_a_task_can_be_cancelled_and_shows_in_the_history(alice_web):
    task = _run(alice_web, "remind me to stretch tomorrow at 7", preview="on")
    r = alice_web.post(f"/agents/tasks/{task.public_id}/cancel", **HX)
    assert r.status_code == 200 and said(r)["message"] == "Task cancelled."
    assert 'data-error-code="cancelled"' in text_of(r)
    page = text_of(alice_web.get("/agents"))
    assert "remind me to stretch tomorrow at 7" in page
    assert "badge-status-cancelled" in page


def _reminder(user, what="renew the passport") -> Reminder:
    return Reminder.objects.create(
        user=user,
        what=what,
        due_at=timezone.now() + timedelta(days=1),
        time_zone="Europe/Lisbon",
    )


def _event(user, title="Dentist") -> Event:
    return Event.objects.create(
        user=user,
        uid=f"{title}@test",
        title=title,
        starts_at=timezone.now() + timedelta(days=3),
        source=Event.Source.TEXT,
    )


def test_reminders_are_listed_and_cancelled_in_place(alice, alice_web):
    rem = _reminder(alice)
    page = text_of(alice_web.get("/agents"))
    assert "renew the passport" in page and "(Europe/Lisbon)" in page
    r = alice_web.post(f"/agents/reminders/{rem.public_id}/cancel", **HX)
    assert r.status_code == 200 and "badge-status-cancelled" in text_of(r)
    assert Reminder.objects.get(pk=rem.pk).status == "cancelled"
    again = alice_web.post(f"/agents/reminders/{rem.public_id}/cancel", **HX)
    assert again.status_code == 409 and "reminder_not_pending" in text_of(again)


def test_the_calendar_downloads_as_ics(alice, alice_web):
    _event(alice)
    assert "Dentist" in text_of(alice_web.get("/agents"))
    r = alice_web.get("/agents/calendar.ics")
    assert r.status_code == 200 and r["Content-Type"] == "text/calendar"
    assert "attachment" in r["Content-Disposition"]
    cal = icalendar.Calendar.from_ical(r.content)
    assert [str(e["SUMMARY"]) for e in cal.walk("VEVENT")] == ["Dentist"]


def test_bob_gets_404_on_alices_fragments_and_sees_none_of_her_data(
    alice, alice_web, bob_web
):
    task = _run(alice_web, "remind me to phone aunt Ines tomorrow at 9", preview="on")
    rem = _reminder(alice, "alice's secret errand")
    _event(alice, "Alice's secret party")
    for url, method in [
        (f"/agents/tasks/{task.public_id}", "get"),
        (f"/agents/tasks/{task.public_id}?watch=1", "get"),
        (f"/agents/tasks/{task.public_id}/commit", "post"),
        (f"/agents/tasks/{task.public_id}/cancel", "post"),
        (f"/agents/reminders/{rem.public_id}/cancel", "post"),
    ]:
        r = getattr(bob_web, method)(url, **HX)
        assert r.status_code == 404, url
        assert "phone aunt Ines" not in text_of(r) and "secret" not in text_of(r)
    page = text_of(bob_web.get("/agents"))
    assert "phone aunt Ines" not in page and "secret" not in page
    assert b"BEGIN:VEVENT" not in bob_web.get("/agents/calendar.ics").content
    assert AgentTask.objects.get(pk=task.pk).status == "queued"
    assert Reminder.objects.get(pk=rem.pk).status == "pending"


def test_signed_out_the_fragments_send_to_sign_in(client):
    r = client.get("/agents/tasks/tsk_x", **HX)
    assert r.status_code == 401 and r["HX-Redirect"] == "/login"
    assert client.get("/agents").status_code == 302


def test_the_page_makes_as_many_queries_for_twenty_tasks_as_for_two(alice, alice_web):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def add(n: int) -> None:
        for i in range(n):
            AgentTask.objects.create(
                user=alice,
                agent="researcher",
                task=f"research {i}",
                timeout=60,
                status="succeeded",
                trace=[
                    {"step": "search", "reads": [{"memory_id": f"mem_{uuid.uuid4()}"}]}
                ],
            )

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert alice_web.get("/agents").status_code == 200
        return len(captured)

    add(2)
    few = queries()
    add(18)
    assert queries() == few
