"""A real Celery worker on the agents queue (and a real beat) for agent tests.

They run as separate processes against the test database, so tests that use
them commit their data (`django_db(transaction=True)`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from agents.models import AgentTask
from kimberly.celery import app as celery_app

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).parent / "celery")


def _env(**extra: str) -> dict[str, str]:
    base_url = settings.DATABASE_URL.rsplit("/", 1)[0]
    # Unset, not empty: prometheus_client goes multiprocess if the name exists.
    inherited = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    return {
        **inherited,
        "DJANGO_SETTINGS_MODULE": "kimberly.settings.test",
        "DATABASE_URL": f"{base_url}/{connection.settings_dict['NAME']}",
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "EMBEDDING_WARMUP": "0",
        "AGENT_WEBHOOK_ALLOW_PRIVATE": "1",
        "AGENT_WEBHOOK_RETRY_BASE_SECONDS": "1",
        **extra,
    }


def _start(args: list[str], log: Path, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [CELERY, "-A", "kimberly.celery", *args],
        cwd=ROOT,
        env=_env(**env),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


# Every queue: agent task runs; scans and webhooks on the default one; and the
# embedding and meditation work the agents' tasks cause (memories they write).
QUEUES = settings.CELERY_QUEUE_NAMES


def purge() -> None:
    """Drop every message waiting on the test workers' queues (leftovers)."""
    with celery_app.connection_for_write() as conn:
        for queue in QUEUES:
            conn.default_channel.queue_purge(queue)  # type: ignore[attr-defined]


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    name: str  # its Celery hostname


def start_worker(log_dir: Path, **env: str) -> Worker:
    """A prefork worker of the agents queue (and of the others, for the reminder
    scans, webhook deliveries and the memories' embedding), with more processes
    than a user may use, so the per-user limit is what holds tasks back."""
    name = f"agents-test-{os.getpid()}-{time.monotonic_ns()}@localhost"
    proc = _start(
        [
            "worker",
            *("-Q", ",".join(QUEUES), "--pool", "prefork", "--concurrency", "5"),
            *("--without-mingle", "--without-gossip", "--loglevel", "INFO"),
            *("--hostname", name),
        ],
        log_dir / "worker.log",
        **env,
    )
    deadline = time.monotonic() + 60
    while not celery_app.control.ping(destination=[name], timeout=0.5):
        assert proc.poll() is None, (log_dir / "worker.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the agents worker did not start"
    return Worker(proc, name)


@pytest.fixture(scope="module")
def _worker_process(
    django_db_setup: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    purge()
    worker = start_worker(tmp_path_factory.mktemp("agents-worker"))
    yield worker
    stop(worker.proc)
    purge()


@pytest.fixture
def agents_worker(_worker_process: Worker, transactional_db: None) -> Iterator[Worker]:
    """The module's worker, settled after each test before the database is
    flushed: what is still queued is dropped, what is running may finish (a
    TRUNCATE must not meet a worker's open transaction)."""
    yield _worker_process
    settle(_worker_process.name)


def settle(name: str, timeout: float = 60) -> None:
    purge()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        active = celery_app.control.inspect(destination=[name], timeout=1).active()
        if active is not None and not any(active.values()):
            return
        time.sleep(0.2)


@pytest.fixture
def beat(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Celery beat with the project's schedule, scanning reminders every second."""
    proc = _start(
        [
            "beat",
            *("-S", "celery.beat:PersistentScheduler"),
            *("-s", str(tmp_path / "beat-schedule"), "--loglevel", "INFO"),
        ],
        tmp_path / "beat.log",
        AGENT_REMINDER_SCAN_SECONDS="1",
        AGENT_SWEEP_SECONDS="1",
    )
    yield proc
    stop(proc)


def wait_for(
    check: Callable[[], Any], *, timeout: float = 60, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def wait_status(task_id: str, *statuses: str, timeout: float = 60) -> AgentTask:
    """The task, once it is in one of `statuses`."""
    pk = task_id.removeprefix("tsk_")
    return wait_for(
        lambda: AgentTask.objects.filter(pk=pk, status__in=statuses).first(),
        timeout=timeout,
        what=f"{task_id} to be {'/'.join(statuses)}",
    )


# --- A webhook receiver on a loopback port ------------------------------------


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    port: int
    hits: list[Hit] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def paths(self) -> list[str]:
        return [hit.path for hit in self.hits]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length)
            receiver.hits.append(Hit(self.path, dict(self.headers.items()), body))
            if self.path == "/slow":
                receiver.release.wait(10)
            if self.path == "/drip":  # a byte of the answer every 0.2 s
                for byte in b"HTTP/1.1 200 OK\r\nX-Padding: " + b"x" * 40:
                    if receiver.release.wait(0.2):
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                return
            flaky = self.path == "/flaky" and receiver.paths().count("/flaky") == 1
            if self.path == "/fail" or flaky:  # /flaky fails only the first time
                self.send_response(500)
            elif self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", receiver.url("/landing"))
            else:
                self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    state = Receiver(port=server.server_address[1])
    server.RequestHandlerClass = _handler(state)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()
