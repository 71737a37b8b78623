"""./cli healthcheck against the real stores, a real (in-process) Celery worker
and the stand-in model server; then with one dependency at a closed port."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from celery.contrib.testing.worker import start_worker
from django.core.management import CommandError, call_command

from kimberly import healthcheck
from kimberly.celery import app as celery_app
from kimberly.runtime import common
from tests.standins.openai_server import closed_port_url

pytestmark = pytest.mark.django_db


def _run(*args: str) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("healthcheck", *args, stdout=out)
    except CommandError as exc:
        return exc.returncode, out.getvalue()
    return 0, out.getvalue()


def _rows(text: str) -> dict[str, list[str]]:
    """The table's rows by name: [ok, ms, detail]."""
    rows = {}
    for line in text.splitlines()[1:]:
        if "  " not in line:  # the verdict
            continue
        name, rest = line.split("  ", 1)
        ok, ms, detail = rest.split(maxsplit=2)
        rows[name.replace(" (optional)", "").strip()] = [ok, ms, detail]
    return rows


def test_every_queue_a_task_is_routed_to_has_a_row_of_its_own(settings):
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    assert routed | {settings.CELERY_TASK_DEFAULT_QUEUE} <= set(healthcheck.queues())


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)  # the worker thread has its own connection
def test_all_up_exits_0_with_a_row_per_dependency(with_llm):
    with start_worker(
        celery_app,
        pool="solo",
        perform_ping_check=False,
        loglevel="WARNING",
        queues=healthcheck.queues(),
        hostname="healthcheck-test@localhost",
    ):
        code, out = _run()
    assert code == 0, out
    rows = _rows(out)
    assert out.splitlines()[0].split() == ["name", "ok", "ms", "detail"]
    assert list(rows) == [
        "database",
        "database_role",
        "redis",
        "broker",
        "storage",
        "embedding_model",
        "model_runner",
        *(f"workers:{q}" for q in healthcheck.queues()),
    ]
    assert all(ok == "yes" for ok, _, _ in rows.values()), out
    assert rows["database_role"][2].endswith(": row-level security applies")
    assert rows["embedding_model"][2].endswith("384 dimensions")
    assert rows["model_runner"][2].startswith("standin-model listed by")
    assert rows["workers:celery"][2] == "healthcheck-test@localhost"
    assert out.splitlines()[-1] == "healthy"


def test_a_broker_at_a_closed_port_exits_1_and_its_row_says_why(settings):
    # The app's producer pool is made once, from the broker URL of that moment:
    # made now, before the override, so later tests do not inherit the port.
    assert celery_app.amqp.producer_pool is not None
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{common.free_port()}/0"
    code, out = _run("--worker-timeout", "0.5")
    assert code == 1
    ok, _, detail = _rows(out)["broker"]
    assert ok == "NO"
    assert "OperationalError" in detail or "ConnectionError" in detail, detail
    assert _rows(out)["database"][0] == "yes"


def test_storage_at_a_closed_port_exits_1_and_its_row_says_why(dead_s3):
    code, out = _run("--worker-timeout", "0.5")
    assert code == 1
    ok, _, detail = _rows(out)["storage"]
    assert (ok, detail.split(":")[0]) == ("NO", "StorageUnavailable")
    assert "unreachable" in detail


def test_only_optional_failures_exit_2_degraded_and_json_says_so(settings):
    settings.LLM_BASE_URL = closed_port_url()
    settings.LLM_MODEL = "standin-model"
    code, out = _run("--json", "--worker-timeout", "0.5")
    assert code == 2
    payload = json.loads(out)
    assert payload["status"] == 2
    checks = {c["name"]: c for c in payload["checks"]}
    assert set(checks["database"]) == {"name", "ok", "ms", "required", "detail"}
    assert checks["database"]["ok"] and checks["database"]["required"]
    runner = checks["model_runner"]
    assert (runner["ok"], runner["required"]) == (False, False)
    assert runner["detail"].startswith("RunnerError: Could not reach the model server")
    # no worker runs in this test: said so for each queue
    for queue in healthcheck.queues():
        worker = checks[f"workers:{queue}"]
        assert (worker["ok"], worker["detail"]) == (False, "no worker answered")
