"""Agent task limits and refusals, with no worker running: routing errors, the
per-user hand-over limit and queue limit, switches, cancel of a waiting task."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from agents.models import AgentTask
from agents.services.tasks import dispatch
from agents.tests.conftest import purge

pytestmark = pytest.mark.django_db(transaction=True)


def _submit(api, status=202, **body):
    r = api.post("/v1/agents/tasks", body, format="json")
    assert r.status_code == status, r.content
    return r.json()


def test_nothing_fits_is_400_and_nothing_is_kept(alice_api):
    r = alice_api.post("/v1/agents/tasks", {"task": "hum a tune"}, format="json")
    assert r.status_code == 400
    assert r.json()["error"] == "no_agent_fits"
    assert not AgentTask.objects.exists()


def test_bad_params_are_400_before_anything_is_queued(alice_api):
    r = alice_api.post(
        "/v1/agents/tasks",
        {"agent": "reminder", "task": "remind me to stretch"},
        format="json",
    )
    assert r.status_code == 400
    assert r.json()["error"] == "no_time_found"
    r = alice_api.post(
        "/v1/agents/tasks",
        {"task": "remind me at 9", "params": {"timeout": 301}},
        format="json",
    )
    assert r.status_code == 400
    assert not AgentTask.objects.exists()


def test_a_disabled_agent_is_409_and_its_waiting_tasks_are_cancelled(
    alice_api, settings
):
    settings.AGENT_MAX_RUNNING = 0
    waiting = _submit(alice_api, agent="reminder", task="remind me at 9 to stretch")
    call_command("agent", "disable", "reminder", "--reason", "incident 42")
    assert AgentTask.objects.get(pk=waiting["task_id"][4:]).status == "cancelled"
    r = alice_api.post("/v1/agents/tasks", {"task": "remind me at 9"}, format="json")
    assert r.status_code == 409
    assert r.json()["details"] == {"agent": "reminder", "by": "operator"}
    call_command("agent", "enable", "reminder")
    _submit(alice_api, task="remind me at 9 to stretch")
    alice_api.put("/v1/agents/reminder", {"enabled": False}, format="json")
    r = alice_api.post("/v1/agents/tasks", {"task": "remind me at 9"}, format="json")
    assert r.status_code == 409 and r.json()["details"]["by"] == "user"
    purge()


def test_the_101st_waiting_task_is_429_agent_queue_full(alice, alice_api, settings):
    settings.AGENT_MAX_RUNNING = 0  # nothing is handed to a worker: all wait
    AgentTask.objects.bulk_create(
        AgentTask(user=alice, agent="reminder", task="remind me at 9", timeout=60)
        for _ in range(99)
    )
    _submit(alice_api, task="remind me at 9 to stretch")
    r = alice_api.post("/v1/agents/tasks", {"task": "remind me at 9"}, format="json")
    assert r.status_code == 429
    assert r.json()["error"] == "agent_queue_full"
    assert r.headers["Retry-After"]
    assert AgentTask.objects.filter(user=alice).count() == 100


def test_only_three_of_a_users_tasks_are_handed_to_workers_at_once(alice, settings):
    rows = AgentTask.objects.bulk_create(
        AgentTask(user=alice, agent="reminder", task="remind me at 9", timeout=60)
        for _ in range(5)
    )
    assert dispatch(alice.pk) == 3
    assert dispatch(alice.pk) == 0  # the first three still hold the slots
    AgentTask.objects.filter(pk=rows[0].pk).update(status="succeeded")
    assert dispatch(alice.pk) == 1
    handed = AgentTask.objects.filter(dispatched_at__isnull=False)
    assert sorted(t.pk for t in handed) == sorted(r.pk for r in rows[:4])
    purge()


def test_cancel_a_waiting_task_and_not_a_finished_one(alice_api, settings):
    settings.AGENT_MAX_RUNNING = 0
    t = _submit(alice_api, task="remind me at 9 to stretch")
    r = alice_api.post(f"/v1/agents/tasks/{t['task_id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    r = alice_api.post(f"/v1/agents/tasks/{t['task_id']}/cancel")
    assert r.status_code == 409 and r.json()["error"] == "task_finished"


def test_the_sweep_ends_an_execution_past_its_hard_limit_and_resends_lost_ones(
    alice, settings
):
    import datetime as dt
    import uuid

    from django.utils import timezone

    from agents.services.execution import sweep_tasks, task_killed

    settings.AGENT_MAX_RUNNING = 1
    old = timezone.now() - dt.timedelta(seconds=60 + 25)
    stuck = AgentTask.objects.create(
        user=alice,
        agent="reminder",
        task="remind me at 9",
        timeout=60,
        status="running",
        started_at=old,
        claim=uuid.uuid4(),
    )
    lost = AgentTask.objects.create(
        user=alice,
        agent="reminder",
        task="remind me at 9",
        timeout=60,
        dispatched_at=timezone.now() - dt.timedelta(hours=1),
        claim=uuid.uuid4(),
    )
    assert sweep_tasks() == {"timed_out": 1, "dispatched": 0, "resent": 1}
    stuck.refresh_from_db()
    assert stuck.status == "timed_out" and stuck.error["code"] == "timed_out"
    claim = lost.claim
    lost.refresh_from_db()
    assert lost.dispatched_at is not None and lost.dispatched_at > old
    assert (lost.status, lost.claim) == ("queued", claim)  # same claim: one runs
    # A killed execution's report counts only while it still holds the task.
    assert not task_killed(task_id=str(stuck.pk), claim=str(stuck.claim))
    purge()


def test_a_denied_type_is_refused_recorded_and_counted(alice, alice_api, settings):
    from agents import metrics
    from audit.models import AuditEvent

    settings.AGENT_DENY_TYPES = ["coder"]
    before = metrics.sandbox_violations.labels(agent="coder")._value.get()
    r = alice_api.post(
        "/v1/agents/tasks",
        {"task": "run", "agent": "coder", "params": {"code": "print(1)"}},
        format="json",
    )
    assert r.status_code == 409 and r.json()["error"] == "agent_disabled"
    event = AuditEvent.objects.get(action="agent.sandbox_violation")
    assert event.details["rule"] == "deny_list" and event.user_id == alice.pk
    assert metrics.sandbox_violations.labels(agent="coder")._value.get() == before + 1
    assert not AgentTask.objects.exists()


def test_an_agent_reaching_past_its_grant_is_refused_and_recorded(alice):
    from agents.registry import AGENT_TYPES
    from agents.runs import Run
    from audit.models import AuditEvent
    from memory.gateway import PermissionDenied

    task = AgentTask.objects.create(
        user=alice, agent="coder", task="run", timeout=60, status="running"
    )
    run = Run(task=task, agent=AGENT_TYPES["coder"], user=alice)
    with pytest.raises(PermissionDenied):
        run.recall("anything", 5)
    with pytest.raises(PermissionDenied):
        run.write("memory.write", {"content": "x", "tier": "short-term"}, "x")
    assert run.writes == []
    violations = AuditEvent.objects.filter(action="agent.sandbox_violation")
    assert [v.details["permission"] for v in violations.order_by("seq")] == [
        "memory.read",
        "memory.write",
    ]
    assert AuditEvent.objects.filter(action="memory.access_denied").count() == 2
    assert violations.order_by("seq")[0].actor_id == f"coder:{task.public_id}"


def test_cli_lists_a_users_tasks(alice, settings, capsys):
    settings.AGENT_MAX_RUNNING = 0
    AgentTask.objects.create(
        user=alice,
        agent="reminder",
        task="remind me at 9",
        timeout=60,
        status="failed",
        error={"code": "no_time_found"},
    )
    call_command("agent", "tasks", "--user", alice.email)
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["task", "agent", "status", "created"]
    assert out[1].split()[1:3] == ["reminder", "failed"]
    assert out[1].split()[-1] == "no_time_found"


def test_the_admin_shows_what_ran_and_not_what_it_said(admin_client, alice):
    task = AgentTask.objects.create(
        user=alice,
        agent="researcher",
        task="what is my secret PIN",
        timeout=60,
        status="succeeded",
        result={"digest": "PIN 4711"},
        trace=[
            {
                "step": "search",
                "duration_ms": 12,
                "reads": [{"memory_id": "mem_x", "query": "secret PIN"}],
                "writes": [{"kind": "memory.write", "summary": "PIN 4711"}],
                "detail": {"query": "secret PIN"},
            }
        ],
        plan=[
            {"kind": "memory.write", "payload": {"content": "PIN 4711"}, "summary": "s"}
        ],
    )
    page = admin_client.get(f"/admin/agents/agenttask/{task.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "search 12 ms" in html and "mem_x" in html and "memory.write" in html
    assert "PIN" not in html
    assert admin_client.get("/admin/agents/agenttask/").status_code == 200
    assert admin_client.get("/admin/agents/reminder/").status_code == 200
    assert admin_client.get("/admin/agents/event/").status_code == 200
