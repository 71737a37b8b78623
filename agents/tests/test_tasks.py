"""Agent tasks through the API, run by a real Celery worker on the agents queue:
routing, preview then commit, switches, the queue limit, cancel, personas."""

from __future__ import annotations

import pytest

from agents.models import AgentTask, Reminder
from agents.tests.conftest import wait_status
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db(transaction=True)


def _submit(api, status=202, **body):
    r = api.post("/v1/agents/tasks", body, format="json")
    assert r.status_code == status, r.content
    return r.json()


def test_a_routed_reminder_runs_on_the_worker_and_is_kept(alice_api, agents_worker):
    tz = {"time_zone": "America/New_York"}
    assert alice_api.put("/v1/user", tz, format="json").status_code == 200
    t = _submit(alice_api, task="Remind me to call mom tomorrow at 9")
    assert (t["agent"], t["status"], t["routed"]) == ("reminder", "queued", True)
    wait_status(t["task_id"], "succeeded")
    body = alice_api.get(f"/v1/agents/tasks/{t['task_id']}").json()
    assert body["result"]["what"] == "call mom"
    # 9 in the morning where alice lives (EST in December), kept in UTC.
    assert body["result"]["due_local"].endswith("T09:00:00-05:00")
    assert body["result"]["due_at"].endswith("T14:00:00Z")
    assert [s["step"] for s in body["trace"]] == ["parse", "plan", "apply"]
    assert all(s["duration_ms"] >= 0 for s in body["trace"])
    (applied,) = body["result"]["applied"]
    reminders = alice_api.get("/v1/agents/reminders").json()["items"]
    assert [r["id"] for r in reminders] == [applied["reminder_id"]]
    assert reminders[0]["status"] == "pending"
    assert reminders[0]["task_id"] == t["task_id"]


def test_preview_plans_without_applying_and_commit_applies_the_plan(
    alice, alice_api, agents_worker
):
    t = _submit(alice_api, task="remind me to water the plants at 18:00", preview=True)
    done = wait_status(t["task_id"], "previewed")
    assert [w["kind"] for w in done.plan] == ["reminder.create"]
    assert not Reminder.objects.exists()
    shown = alice_api.get(f"/v1/agents/tasks/{t['task_id']}").json()
    assert shown["planned_writes"][0]["summary"].startswith("Remind you to water")

    r = alice_api.post(f"/v1/agents/tasks/{t['task_id']}/commit")
    assert r.status_code == 202 and r.json()["status"] == "queued"
    wait_status(t["task_id"], "succeeded")
    (rem,) = Reminder.objects.filter(user=alice)
    assert rem.what == "water the plants"
    assert rem.due_at.isoformat() == done.plan[0]["payload"]["due_at"]
    again = alice_api.post(f"/v1/agents/tasks/{t['task_id']}/commit")
    assert again.status_code == 409 and again.json()["error"] == "not_previewed"
    assert AuditEvent.objects.filter(action="agent.task_commit").count() == 1


def test_bob_sees_none_of_alices_tasks_reminders_or_events(
    alice_api, bob_api, agents_worker
):
    t = _submit(alice_api, task="remind me to call mom tomorrow at 9")
    s = _submit(alice_api, agent="scheduler", task="Dentist on March 3 2027 at 10am")
    wait_status(t["task_id"], "succeeded")
    wait_status(s["task_id"], "succeeded")
    rem = alice_api.get("/v1/agents/reminders").json()["items"][0]["id"]
    assert len(alice_api.get("/v1/agents/events").json()["items"]) == 1
    for path in (
        f"/v1/agents/tasks/{t['task_id']}",
        f"/v1/agents/reminders/{rem}",
    ):
        assert bob_api.get(path).status_code == 404, path
    for path in (
        f"/v1/agents/tasks/{t['task_id']}/cancel",
        f"/v1/agents/tasks/{t['task_id']}/commit",
        f"/v1/agents/reminders/{rem}/cancel",
    ):
        assert bob_api.post(path).status_code == 404, path
    assert bob_api.get("/v1/agents/tasks").json()["items"] == []
    assert bob_api.get("/v1/agents/reminders").json()["items"] == []
    assert bob_api.get("/v1/agents/events").json()["items"] == []
    assert b"BEGIN:VEVENT" not in bob_api.get("/v1/agents/calendar.ics").content
    assert alice_api.get(f"/v1/agents/reminders/{rem}").status_code == 200


def test_a_reminder_preview_committed_after_its_time_fails_and_keeps_nothing(
    alice, alice_api, agents_worker
):
    t = _submit(alice_api, task="remind me to stretch at 18:00", preview=True)
    done = wait_status(t["task_id"], "previewed")
    plan = done.plan
    plan[0]["payload"]["due_at"] = "2020-01-01T00:00:00+00:00"  # time has passed
    AgentTask.objects.filter(pk=done.pk).update(plan=plan)
    assert alice_api.post(f"/v1/agents/tasks/{t['task_id']}/commit").status_code == 202
    failed = wait_status(t["task_id"], "failed")
    assert failed.error["code"] == "time_in_past"
    assert not Reminder.objects.exists()


def test_an_ics_import_without_the_file_is_400(alice_api):
    r = alice_api.post(
        "/v1/agents/tasks",
        {"agent": "scheduler", "task": "import", "params": {"source": "ics"}},
        format="json",
    )
    assert r.status_code == 400
    assert not AgentTask.objects.exists()
