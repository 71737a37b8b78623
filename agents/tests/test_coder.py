"""The coder through the API on a real agents worker: a program runs in the
sandbox; the code policy refuses (audited, counted); escapes end with a clear
status; the per-user limit holds the 4th task back; cancel stops a running one;
time limits end a task as timed_out."""

from __future__ import annotations

import pytest

from agents import metrics
from agents.models import AgentTask
from agents.tests.conftest import wait_for, wait_status
from agents.tests.test_sandbox import sandbox_processes
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db(transaction=True)

SLEEP = "import time\ntime.sleep({})\nprint('woke')"


def _code(api, code: str, status=202, **extra):
    r = api.post(
        "/v1/agents/tasks",
        {"task": "run this", "agent": "coder", "params": {"code": code, **extra}},
        format="json",
    )
    assert r.status_code == status, r.content
    return r.json()


def _done(api, task_id: str) -> dict:
    wait_status(task_id, "succeeded", "failed", "timed_out", "cancelled")
    return api.get(f"/v1/agents/tasks/{task_id}").json()


def test_a_program_runs_in_the_sandbox_and_returns_its_output(alice_api, agents_worker):
    t = _code(alice_api, "import sys\nprint(6 * 7)\nprint('oops', file=sys.stderr)")
    done = _done(alice_api, t["task_id"])
    assert done["status"] == "succeeded", done
    r = done["result"]
    assert (r["outcome"], r["exit_status"], r["stdout"]) == ("ok", 0, "42\n")
    assert r["stderr"] == "oops\n" and r["startup_ms"] >= 0
    assert [s["step"] for s in done["trace"]] == ["policy", "sandbox"]


def test_the_code_policy_refuses_is_audited_and_counted(alice, alice_api):
    before = metrics.sandbox_violations.labels(agent="coder")._value.get()
    r = alice_api.post(
        "/v1/agents/tasks",
        {"task": "run this", "params": {"code": "import socket\nsocket.socket()"}},
        format="json",
    )
    assert r.status_code == 403 and r.json()["error"] == "sandbox_violation"
    assert r.json()["details"]["violations"][0]["rule"] == "module"
    event = AuditEvent.objects.get(action="agent.sandbox_violation")
    assert (event.user_id, event.target_id) == (alice.pk, "coder")
    assert metrics.sandbox_violations.labels(agent="coder")._value.get() == before + 1
    assert not AgentTask.objects.exists()
    bad = alice_api.post(
        "/v1/agents/tasks",
        {"task": "run", "agent": "coder", "params": {"code": "def ("}},
        format="json",
    )
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_code"


@pytest.mark.parametrize(
    ("code", "status", "error", "check"),
    [
        (
            "import urllib.parse, _socket\n"
            "s = _socket.socket(); s.settimeout(2); s.connect(('1.1.1.1', 80))",
            "succeeded",
            None,
            lambda r: r["outcome"] == "error" and "unreachable" in r["stderr"],
        ),
        (
            "print(open('/etc/shadow').read())",
            "succeeded",
            None,
            lambda r: r["outcome"] == "error" and "FileNotFoundError" in r["stderr"],
        ),
        ("x = bytearray(4 * 1024**3)", "failed", "sandbox_memory_limit", None),
        ("print('x' * (100 * 1024**2))", "failed", "sandbox_output_limit", None),
        ("while True:\n    pass", "timed_out", "sandbox_timeout", None),
    ],
    ids=["network", "etc-shadow", "4gib", "100mb-output", "endless-loop"],
)
def test_escapes_through_the_api_end_contained_with_a_clear_status(
    alice_api, agents_worker, code, status, error, check
):
    t = _code(alice_api, code, timeout=6)
    done = _done(alice_api, t["task_id"])
    assert done["status"] == status, done
    if error:
        assert done["error"]["code"] == error
    if check:
        assert check(done["result"]), done["result"]


def test_the_fourth_task_of_a_user_waits_until_one_of_three_ends(
    alice_api, bob_api, agents_worker
):
    tasks = [_code(alice_api, SLEEP.format(3)) for _ in range(4)]
    ids = [t["task_id"][4:] for t in tasks]
    wait_for(
        lambda: AgentTask.objects.filter(pk__in=ids, status="running").count() == 3,
        what="three running",
    )
    assert AgentTask.objects.get(pk=ids[3]).status == "queued"
    # Another user is not held back by alice's limit.
    bobs = _code(bob_api, SLEEP.format(0))
    assert _done(bob_api, bobs["task_id"])["status"] == "succeeded"
    assert AgentTask.objects.get(pk=ids[3]).status == "queued"
    last = _done(alice_api, tasks[3]["task_id"])
    assert last["status"] == "succeeded" and last["result"]["stdout"] == "woke\n"
    fourth = AgentTask.objects.get(pk=ids[3])
    ends = [t.finished_at for t in AgentTask.objects.filter(pk__in=ids[:3])]
    assert fourth.started_at is not None and None not in ends
    assert fourth.started_at >= min(e for e in ends if e is not None)


def test_cancel_stops_a_running_program_and_the_worker_goes_on(
    alice_api, agents_worker
):
    t = _code(alice_api, SLEEP.format(30), timeout=60)
    wait_status(t["task_id"], "running")
    wait_for(lambda: sandbox_processes() != [], what="the sandbox to start")
    r = alice_api.post(f"/v1/agents/tasks/{t['task_id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    wait_for(lambda: sandbox_processes() == [], timeout=15, what="no sandbox left")
    after = _code(alice_api, "print('next')")
    assert _done(alice_api, after["task_id"])["result"]["stdout"] == "next\n"
    assert AgentTask.objects.get(pk=t["task_id"][4:]).status == "cancelled"
