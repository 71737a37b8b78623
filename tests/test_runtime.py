"""The embedded-services runtime: start, reuse without owning, recover from crashes."""

from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest

from kimberly import runtime


@pytest.fixture
def scratch_runtime(tmp_path, monkeypatch):
    """Point the runtime at a scratch ./var so the suite's own servers are untouched."""
    var = tmp_path / "var"
    monkeypatch.setattr(runtime, "VAR_DIR", var)
    monkeypatch.setattr(runtime, "PG_DATA", var / "pg")
    monkeypatch.setattr(runtime, "VALKEY_DIR", var / "valkey")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    yield var
    runtime.stop_valkey()
    runtime.stop_postgres()


def _dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        pid -= 1


@contextlib.contextmanager
def _command():
    """Like a separate `make test`/`make run`: starts with no URLs in its environment."""
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    with runtime.embedded_services() as services:
        yield services


def _running() -> bool:
    return runtime.postgres_port() is not None and runtime.valkey_port() is not None


def test_second_command_reuses_servers_and_the_last_one_out_stops_them(scratch_runtime):
    with _command() as first:
        assert {s.name for s in first} == {"postgres", "valkey"}
        assert all(s.started_here for s in first)
        with _command() as second:
            assert [s.url for s in second] == [s.url for s in first]
            assert not any(s.started_here for s in second)
        assert _running(), "a command that reused the servers leaves them running"
    assert runtime.postgres_port() is None and runtime.valkey_port() is None


def test_servers_outlive_their_starter_while_another_command_uses_them(scratch_runtime):
    starter, user = _command(), _command()
    starter.__enter__()
    user.__enter__()
    starter.__exit__(None, None, None)
    assert _running(), "make test ending must not stop servers a make run still uses"
    user.__exit__(None, None, None)
    assert not runtime.postgres_port() and not runtime.valkey_port()


def test_servers_started_with_up_are_never_stopped_by_commands(scratch_runtime):
    runtime.ensure(auto_stop=False)
    with _command() as services:
        assert not any(s.started_here for s in services)
    assert _running()


def test_stale_pid_files_left_by_a_crash_are_recovered(scratch_runtime):
    runtime.ensure(auto_stop=False)
    # Valkey killed hard: its pid file stays behind.
    vpid = int((scratch_runtime / "valkey" / "valkey.pid").read_text())
    os.kill(vpid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while runtime._pid_alive(vpid) and time.monotonic() < deadline:
        try:
            os.waitpid(vpid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)
    # Postgres: stopped, then a stale postmaster.pid naming a dead process.
    runtime.stop_postgres()
    pidfile = scratch_runtime / "pg" / "postmaster.pid"
    pidfile.write_text(f"{_dead_pid()}\n{scratch_runtime / 'pg'}\n0\n5999\n\n\n\n")
    assert runtime.valkey_port() is None
    assert runtime.postgres_port() is None
    with _command() as services:
        assert all(s.started_here for s in services)
        assert _running()
