"""Tracing (kimberly/tracing.py): the web as deployed (gunicorn with the project's
config and wsgi.py, OTEL_ENABLED=1) exports its spans over OTLP/HTTP to a
receiver on a real socket here, which decodes them with opentelemetry-proto."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest
from django.conf import settings
from django.db import connection
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto

from kimberly import tracing
from kimberly.celery import app as celery_app
from kimberly.runtime import common
from tests.log_canary import CANARY

ROOT = Path(__file__).resolve().parents[1]
GUNICORN = str(Path(sys.executable).parent / "gunicorn")


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


@dataclass
class Exported:
    name: str
    kind: int
    trace_id: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    events: list[dict[str, Any]]


@dataclass
class Receiver:
    """An OTLP/HTTP trace receiver: POST /v1/traces, protobuf."""

    spans: list[Exported] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def add(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        with self.lock:
            for rs in request.resource_spans:
                resource = {a.key: _value(a.value) for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    self.spans += [_exported(s, resource) for s in ss.spans]


def _exported(span: SpanProto, resource: dict[str, Any]) -> Exported:
    return Exported(
        name=span.name,
        kind=span.kind,
        trace_id=span.trace_id.hex(),
        attributes={a.key: _value(a.value) for a in span.attributes},
        resource=resource,
        events=[
            {"name": e.name, **{a.key: _value(a.value) for a in e.attributes}}
            for e in span.events
        ],
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path != "/v1/traces":
                self.send_response(404)
                self.end_headers()
                return
            rec.add(body)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    rec.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=rec.server.serve_forever, daemon=True)
    thread.start()
    yield rec
    rec.server.shutdown()
    rec.server.server_close()


def _web(tmp_path: Path, receiver: Receiver, port: int) -> subprocess.Popen[bytes]:
    base_url = settings.DATABASE_URL.rsplit("/", 1)[0]
    env = {
        **{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
        "DJANGO_SETTINGS_MODULE": "kimberly.settings.test",
        "DATABASE_URL": f"{base_url}/{connection.settings_dict['NAME']}",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "1",
        "EMBEDDING_WARMUP": "0",
        "OTEL_ENABLED": "1",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    env.pop("OTEL_SERVICE_NAME", None)
    log = (tmp_path / "web.log").open("wb")  # the run's end scans *.log too
    return subprocess.Popen(
        [GUNICORN, "kimberly.wsgi", "--config", "python:kimberly.gunicorn_conf"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _wait_for(check: Any, what: str, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return value


def _up(url: str) -> bool:
    try:
        return httpx2.get(f"{url}/v1/health", timeout=2).status_code == 200
    except httpx2.HTTPError:
        return False


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)  # the server is another process
def test_a_request_to_the_deployed_web_exports_its_http_and_sql_spans_without_content(
    tmp_path, receiver, alice
):
    from knox.models import AuthToken

    _, token = AuthToken.objects.create(user=alice)
    port = common.free_port()
    url = f"http://127.0.0.1:{port}"
    web = _web(tmp_path, receiver, port)
    try:
        _wait_for(lambda: _up(url) or web.poll() is not None, "gunicorn to answer")
        assert web.poll() is None, (tmp_path / "web.log").read_text()[-3000:]
        auth = {"Authorization": f"Bearer {token}"}
        created = httpx2.post(
            f"{url}/v1/memory",
            json={"content": f"My locker code is {CANARY}", "type": "long-term"},
            headers=auth,
            timeout=30,
        )
        assert created.status_code == 201, created.text
        listed = httpx2.get(
            f"{url}/v1/memory", params={"q": CANARY}, headers=auth, timeout=30
        )
        assert listed.status_code == 200, listed.text
    finally:
        web.send_signal(signal.SIGTERM)  # worker_exit flushes the batch
        web.wait(timeout=60)

    def server_span(method: str) -> Exported | None:
        return next(
            (
                s
                for s in receiver.spans
                if s.kind == SpanProto.SPAN_KIND_SERVER
                and s.attributes.get("http.route") == "v1/memory"
                and method
                in (
                    s.attributes.get("http.method"),
                    s.attributes.get("http.request.method"),
                )
            ),
            None,
        )

    post = _wait_for(lambda: server_span("POST"), "the POST's span")
    get = _wait_for(lambda: server_span("GET"), "the GET's span")
    assert post.name == "POST v1/memory"
    assert post.resource["service.name"] == "kimberly-web"
    sql = [s for s in receiver.spans if s.attributes.get("db.system") == "postgresql"]
    inserts = [
        s
        for s in sql
        if s.trace_id == post.trace_id
        and str(s.attributes.get("db.statement", "")).startswith("INSERT INTO")
    ]
    assert inserts, [s.name for s in sql][:20]
    assert any(s.attributes.get("db.system") == "redis" for s in receiver.spans)
    # the query string is gone from the GET's attributes; no span shows content
    assert "q=" not in json.dumps(get.attributes)
    assert "url.query" not in get.attributes
    everything = json.dumps([(s.name, s.attributes, s.events) for s in receiver.spans])
    assert CANARY not in everything
    # gunicorn's own lines are JSON as well (a worker's boot, the shutdown)
    lines = (tmp_path / "web.log").read_text().splitlines()
    logged = [json.loads(line) for line in lines]
    assert "Booting worker" in " ".join(x["message"] for x in logged)
    # the request's log lines carry its trace (the run's log file has INFO)
    test_log = Path(settings.TEST_LOG_FILE).read_text().splitlines()
    traced = [json.loads(x) for x in test_log if post.trace_id in x]
    assert any(x["logger"] == "kimberly.access" for x in traced)


@pytest.mark.slow
def test_a_task_run_by_a_worker_child_exports_its_span_and_its_sql(tmp_path, receiver):
    env = {
        **{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
        "DJANGO_SETTINGS_MODULE": "kimberly.settings.test",
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "EMBEDDING_WARMUP": "0",
        "OTEL_ENABLED": "1",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    env.pop("OTEL_SERVICE_NAME", None)
    celery_app.control.purge()
    worker = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "celery"),
            *("-A", "kimberly.celery", "worker", "--pool", "prefork"),
            *("--concurrency", "1", "--include", "tests.worker_probe"),
            *("--without-mingle", "--without-gossip", "--loglevel", "INFO"),
        ],
        cwd=ROOT,
        env=env,
        stdout=(tmp_path / "worker.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        celery_app.send_task("tests.worker_probe.bump")

        def run_span() -> Exported | None:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            return next(
                (s for s in receiver.spans if s.name == "run/tests.worker_probe.bump"),
                None,
            )

        run = _wait_for(run_span, "the task's span")
        assert run.resource["service.name"] == "kimberly-worker"
        assert run.kind == SpanProto.SPAN_KIND_CONSUMER
        # its row-level-security frame's statement, in the task's trace
        _wait_for(
            lambda: [
                s
                for s in receiver.spans
                if s.trace_id == run.trace_id
                and s.attributes.get("db.system") == "postgresql"
            ],
            "the task's SQL span",
        )

        # the task's log lines (the worker appends to the run's log file) carry
        # its id and its trace
        def done_line() -> dict[str, Any] | None:
            lines = Path(settings.TEST_LOG_FILE).read_text().splitlines()
            return next(
                (
                    line
                    for line in map(json.loads, lines)
                    if line.get("logger") == "celery.app.trace"
                    and "tests.worker_probe.bump" in line["message"]
                    and "succeeded" in line["message"]
                ),
                None,
            )

        line = _wait_for(done_line, "the task's log line")
        assert line["task_name"] == "tests.worker_probe.bump"
        assert line["trace_id"] == run.trace_id
    finally:
        worker.terminate()
        worker.wait(30)
        celery_app.control.purge()


def test_the_service_name_follows_otel_service_name(monkeypatch):
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    assert tracing._resource("worker").attributes["service.name"] == "kimberly-worker"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "kimberly-eu1")
    assert tracing._resource("worker").attributes["service.name"] == "kimberly-eu1"


def test_tracing_is_off_unless_switched_on(settings):
    settings.OTEL_ENABLED = False
    assert tracing.setup("web") is None
