"""Log lines are JSON with the ids of what they belong to and never what users
wrote: the paths that carry content are driven here with the canary
(tests/log_canary.py), and the lines they wrote are read back from the run's log
file (the file the root conftest scans for the canary when the run ends)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import shared_task
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings
from django.urls import path

from kimberly import rls
from kimberly.logging import REDACTED
from tests.log_canary import CANARY, find_leaks
from tests.standins.openai_server import Behaviour

logger = logging.getLogger("kimberly.tests.log_hygiene")


class LogTail:
    """The lines the run's log file gained since this was made, parsed."""

    def __init__(self) -> None:
        self.path = Path(settings.TEST_LOG_FILE)
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def text(self) -> str:
        with self.path.open(encoding="utf-8") as f:
            f.seek(self.offset)
            return f.read()

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text().splitlines()]


@pytest.fixture
def tail() -> LogTail:
    return LogTail()


def test_every_record_of_the_run_goes_to_the_scanned_file_as_json(tail):
    logger.info("probe", extra={"memory_id": "mem_123"})
    [line] = [r for r in tail.records() if r["logger"] == logger.name]
    assert line["level"] == "INFO"
    assert line["message"] == "probe"
    assert line["memory_id"] == "mem_123"
    assert line["request_id"] == "-"  # outside a request


def test_the_scan_finds_the_canary_and_the_secrets_in_any_case(tmp_path):
    from users.tests.factories import DEFAULT_PASSWORD

    log = tmp_path / "run.jsonl"
    log.write_text(
        '{"message": "clean"}\n'
        f'{{"message": "stored: {CANARY.upper()}"}}\n'
        f'{{"message": "login with {DEFAULT_PASSWORD}"}}\n'
    )
    leaks = find_leaks([log, tmp_path / "missing.log"])
    assert [leak.split(": ", 2)[1] for leak in leaks] == [
        "stored content (the canary)",
        "the test users' password",
    ]
    assert leaks[0].startswith(f"{log}:2:")


@pytest.mark.django_db(transaction=True)  # the chat's reply is saved by threads
def test_content_sent_through_the_api_is_logged_as_ids_and_paths_only(
    alice_api, with_llm, tail
):
    created = alice_api.post(
        "/v1/memory",
        {"content": f"My locker code is {CANARY}", "type": "long-term"},
        format="json",
    )
    assert created.status_code == 201, created.content
    item = created.json()["id"]
    edited = alice_api.patch(
        f"/v1/memory/{item}", {"content": f"Locker {CANARY} moved"}, format="json"
    )
    assert edited.status_code == 200, edited.content
    assert alice_api.get("/v1/memory", {"q": CANARY}).status_code == 200
    query = alice_api.post("/v1/memory/query", {"query": CANARY}, format="json")
    assert query.status_code == 200, query.content
    bad = alice_api.post(
        "/v1/memory", {"content": CANARY, "type": "no-such-tier"}, format="json"
    )
    assert bad.status_code == 400
    chat = alice_api.post("/v1/chat", {"message": f"Where is {CANARY}?"}, format="json")
    assert chat.status_code == 200, chat.content
    assert CANARY in chat.json()["message"]["content"]  # the stand-in's reply
    # A model server whose error quotes the prompt back: the status is logged.
    echo = json.dumps({"error": {"message": f"cannot answer 'Where is {CANARY}?'"}})
    with_llm.script(*[Behaviour(status=400, body=echo)] * 3)
    failed = alice_api.post("/v1/chat", {"message": f"And {CANARY}?"}, format="json")
    assert failed.status_code >= 500

    records = tail.records()
    access = [r for r in records if r["logger"] == "kimberly.access"]
    assert [(r["method"], r["path"], r["status"]) for r in access[:2]] == [
        ("POST", "/v1/memory", 201),
        ("PATCH", f"/v1/memory/{item}", 200),
    ]
    assert all(len(r["request_id"]) == 32 for r in access)
    assert [r for r in records if r["message"] == "model server answered 400"]
    assert CANARY not in tail.text()


def _boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug")


urlpatterns = [path("boom", _boom)]


@override_settings(ROOT_URLCONF=__name__)
def test_a_server_error_names_the_method_and_path_not_the_query_string(tail):
    client = Client(raise_request_exception=False)
    assert client.get("/boom", {"q": CANARY}).status_code == 500
    [line] = [r for r in tail.records() if r["logger"] == "django.request"]
    assert line["level"] == "ERROR"
    assert line["request"] == "GET /boom"
    assert line["status_code"] == 500
    assert CANARY not in tail.text()


@shared_task(name="tests.test_log_hygiene.echo")
@rls.task_scope(no_rows="a test task: logs, reads no table")
def echo(text: str) -> str:
    logger.info("echo ran", extra={"chars": len(text)})
    return text


@pytest.fixture
def info_trace_log() -> Iterator[None]:
    """Celery's task log at INFO (its tracer asks the level when built)."""
    trace = logging.getLogger("celery.app.trace")
    level = trace.level
    trace.setLevel(logging.INFO)
    yield
    trace.setLevel(level)


@pytest.mark.django_db  # a task's row-level-security frame sets its scope
def test_a_tasks_lines_carry_its_id_and_name_never_its_arguments_or_result(
    tail, info_trace_log
):
    result = echo.apply(args=(CANARY,))
    assert result.get() == CANARY
    records = tail.records()
    [ran] = [r for r in records if r["message"] == "echo ran"]
    assert ran["task_id"] == result.id
    assert ran["task_name"] == "tests.test_log_hygiene.echo"
    [done] = [r for r in records if r["logger"] == "celery.app.trace"]
    assert result.id in done["message"] and "succeeded" in done["message"]
    assert done["message"].endswith(REDACTED)
    assert done["data"]["args"] == done["data"]["return_value"] == REDACTED
    assert CANARY not in tail.text()
    logger.info("after the task")
    assert "task_id" not in tail.records()[-1]
