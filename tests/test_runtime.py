"""The embedded-services runtime: start, reuse without owning, recover from crashes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import pytest

from kimberly import runtime
from kimberly.runtime import common


@pytest.fixture
def scratch_runtime(tmp_path, monkeypatch):
    """Point the runtime at a scratch ./var so the suite's own servers are untouched."""
    var = tmp_path / "var"
    monkeypatch.setattr(common, "VAR_DIR", var)
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
    while runtime.pid_alive(vpid) and time.monotonic() < deadline:
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


def _urls() -> dict[str, str]:
    env = runtime.discovered_env()
    assert env.get("DATABASE_URL") and env.get("REDIS_URL"), "servers are running"
    return env


def test_embedded_servers_refuse_clients_without_the_password(scratch_runtime):
    import psycopg
    import redis

    runtime.ensure(auto_stop=False)
    env = _urls()
    port = runtime.postgres_port()
    for role in ("postgres", "kimberly"):
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(f"postgresql://{role}@127.0.0.1:{port}/kimberly").close()
    vport = runtime.valkey_port()
    assert vport is not None
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=vport).ping()
    assert redis.Redis.from_url(env["REDIS_URL"]).ping()
    creds = scratch_runtime / "credentials.json"
    assert creds.stat().st_mode & 0o777 == 0o600
    assert (scratch_runtime / "valkey" / "valkey.conf").stat().st_mode & 0o777 == 0o600


def test_the_app_role_is_no_superuser_and_its_new_databases_have_pgvector(
    scratch_runtime,
):
    import psycopg

    runtime.ensure(auto_stop=False)
    url = _urls()["DATABASE_URL"]
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT rolsuper, rolcreatedb FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert row == (False, True)
        # What pytest-django does for the test database.
        conn.execute("CREATE DATABASE scratch_test")
    with psycopg.connect(url.rsplit("/", 1)[0] + "/scratch_test") as conn:
        assert conn.execute("SELECT '[1,2]'::vector").fetchone()


def test_a_trust_cluster_made_by_older_code_is_upgraded_on_its_next_start(
    scratch_runtime,
):
    import psycopg

    from kimberly.runtime import postgres as pg

    pgdata = scratch_runtime / "pg"
    pgdata.mkdir(parents=True)
    user = pg._pg_user()
    if user:
        pg._pg_prepare_permissions(user)
    # What the previous runtime made: trust auth, everything owned by postgres.
    pg._pg_run(
        [pg._pg_bin("initdb"), "-D", str(pgdata), "--auth=trust", "-U", "postgres"],
        user,
        stdout=subprocess.DEVNULL,
    )
    with open(pgdata / "postgresql.conf", "a") as conf:
        conf.write("listen_addresses = '127.0.0.1'\nunix_socket_directories = ''\n")
    port = common.free_port()
    ctl = [pg._pg_bin("pg_ctl"), "-D", str(pgdata), "-w", "-o", f"-p {port}"]
    pg._pg_run([*ctl, "start"], user, stdout=subprocess.DEVNULL)
    legacy = f"postgresql://postgres@127.0.0.1:{port}"
    with psycopg.connect(f"{legacy}/postgres", autocommit=True) as conn:
        conn.execute("CREATE DATABASE kimberly")
    with psycopg.connect(f"{legacy}/kimberly", autocommit=True) as conn:
        conn.execute("CREATE TABLE notes (id bigserial PRIMARY KEY, body text)")
    pg._pg_run([*ctl, "stop"], user, stdout=subprocess.DEVNULL)

    runtime.ensure(auto_stop=False)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{runtime.postgres_port()}")
    with psycopg.connect(_urls()["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("INSERT INTO notes (body) VALUES ('kept')")
        conn.execute("ALTER TABLE notes ADD COLUMN tag text")  # the app owns it now
        assert conn.execute("SELECT body FROM notes").fetchone() == ("kept",)
