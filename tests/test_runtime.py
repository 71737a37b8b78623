"""The embedded-services runtime: start, reuse without owning, recover from crashes."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from kimberly import runtime
from kimberly.runtime import common, credentials, seaweed


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
    if os.environ.get("AWS_STORAGE_BUCKET_NAME") == seaweed.BUCKET:
        os.environ.pop("AWS_STORAGE_BUCKET_NAME")  # set by the first command
    with runtime.embedded_services() as services:
        yield services


def _running() -> bool:
    return runtime.postgres_port() is not None and runtime.valkey_port() is not None


def test_second_command_reuses_servers_and_the_last_one_out_stops_them(
    scratch_runtime, monkeypatch
):
    monkeypatch.delenv("AWS_STORAGE_BUCKET_NAME")  # all three, the S3 too
    with _command() as first:
        assert {s.name for s in first} == {"postgres", "valkey", "seaweedfs"}
        assert all(s.started_here for s in first)
        assert (
            os.environ["AWS_S3_ENDPOINT_URL"]
            == runtime.discovered_s3_env()["AWS_S3_ENDPOINT_URL"]
        )
        with _command() as second:
            assert [s.env for s in second] == [s.env for s in first]
            assert not any(s.started_here for s in second)
        assert _running(), "a command that reused the servers leaves them running"
        assert runtime.seaweed_port() is not None
    assert runtime.postgres_port() is None and runtime.valkey_port() is None
    assert runtime.seaweed_port() is None


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


def _s3(port: int, access_key: str, secret_key: str):
    creds = credentials.Credentials("", "", "", access_key, secret_key)
    return seaweed.client(port, creds)


def _listening(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket process `pid` listens on (from /proc)."""
    inodes = set()
    for fd in (Path(f"/proc/{pid}/fd")).iterdir():
        with contextlib.suppress(OSError):
            link = os.readlink(fd)
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    found = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                addr, port = fields[1].split(":")
                found.append((addr, int(port, 16)))
    return found


def test_embedded_s3_listens_on_loopback_only_and_takes_only_its_credentials(
    scratch_s3, capsys
):
    import urllib.error
    import urllib.request

    import botocore.exceptions

    services = runtime.ensure(auto_stop=False)
    assert [s.name for s in services] == ["seaweedfs"]
    port = runtime.seaweed_port()
    assert port is not None
    pid = int((scratch_s3 / "seaweed" / "weed.pid").read_text())
    # The ports weed was given, all random.
    given = set(
        json.loads((scratch_s3 / "seaweed" / "ports.json").read_text()).values()
    )
    assert len(given) == len(seaweed._PORT_FLAGS) and port in given
    assert not given & {8333, 9333, 8080, 8888, 18888, 19333, 23646, 7333, 8181}
    sockets = _listening(pid)
    assert {addr for addr, _ in sockets} == {"0100007F"}  # 127.0.0.1 only
    assert port in {p for _, p in sockets} <= given

    env = runtime.discovered_s3_env()
    assert env == services[0].env
    good = _s3(port, env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
    good.put_object(Bucket="kimberly", Key="k", Body=b"v")
    bad = _s3(port, env["AWS_ACCESS_KEY_ID"], "not-the-secret")
    with pytest.raises(botocore.exceptions.ClientError):
        bad.get_object(Bucket="kimberly", Key="k")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/kimberly/k", timeout=5)
    assert refused.value.code == 403
    for secret in (
        "credentials.json",
        "seaweed/s3.json",
        "seaweed/security.toml",
        "seaweed/tls/node.key",
    ):
        assert (scratch_s3 / secret).stat().st_mode & 0o777 == 0o600
    # Volume files, sockets, log: nothing another local user may read or connect to.
    assert (scratch_s3 / "seaweed").stat().st_mode & 0o777 == 0o700

    from kimberly.runtime import cli

    assert cli.main(["status"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "seaweedfs" in x)
    assert f"http://127.0.0.1:{port}" in line and env["AWS_SECRET_ACCESS_KEY"] in line


def test_a_killed_seaweedfs_is_detected_and_restarted_with_its_data(scratch_s3):
    (svc,) = runtime.ensure(auto_stop=False)
    port = runtime.seaweed_port()
    assert port is not None
    s3 = _s3(port, svc.env["AWS_ACCESS_KEY_ID"], svc.env["AWS_SECRET_ACCESS_KEY"])
    s3.put_object(Bucket="kimberly", Key="kept", Body=b"survives a crash")
    pid = int((scratch_s3 / "seaweed" / "weed.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    assert seaweed._wait_gone(pid, 10)
    assert runtime.seaweed_port() is None
    assert not (scratch_s3 / "seaweed" / "weed.pid").exists(), "stale pid file removed"
    (again,) = runtime.ensure(auto_stop=False)
    assert again.started_here and again.url != svc.url  # a new random port
    new_port = runtime.seaweed_port()
    assert new_port is not None
    s3 = _s3(new_port, svc.env["AWS_ACCESS_KEY_ID"], svc.env["AWS_SECRET_ACCESS_KEY"])
    assert s3.get_object(Bucket="kimberly", Key="kept")["Body"].read() == (
        b"survives a crash"
    )


def test_stop_kills_a_seaweedfs_that_does_not_exit_on_sigterm(scratch_s3, monkeypatch):
    runtime.ensure(auto_stop=False)
    pid = int((scratch_s3 / "seaweed" / "weed.pid").read_text())
    os.kill(pid, signal.SIGSTOP)  # a stopped process acts on SIGTERM only when resumed
    monkeypatch.setattr(seaweed, "STOP_GRACE", 0.5)
    started = time.monotonic()
    runtime.stop_seaweed()
    assert time.monotonic() - started < 5
    assert not runtime.pid_alive(pid)
    assert runtime.seaweed_port() is None


_WEED_KEYS = (
    "weed_signing",
    "weed_signing_read",
    "weed_filer_signing",
    "weed_filer_signing_read",
)


@pytest.mark.parametrize(
    "old",
    [
        {"pg_superuser": "su-pass", "pg_app": "app-pass", "valkey": "vk-pass"},
        {  # written once the S3 keys came, before SeaweedFS's signing keys
            "pg_superuser": "su-pass",
            "pg_app": "app-pass",
            "valkey": "vk-pass",
            "s3_access_key": "KBOLDOLDOLDOLDOLDOLD",
            "s3_secret_key": "old-s3-secret",
        },
    ],
    ids=["before-s3", "before-weed-keys"],
)
def test_credentials_of_older_code_keep_their_values_and_gain_the_new_keys(
    tmp_path, monkeypatch, old
):
    monkeypatch.setattr(common, "VAR_DIR", tmp_path)
    common.write_private(tmp_path / "credentials.json", json.dumps(old))
    loaded = credentials.load()
    assert loaded is not None and loaded.weed_signing == ""  # read-only: unchanged
    creds = credentials.load_or_create()
    assert {k: getattr(creds, k) for k in old} == old
    if "s3_access_key" not in old:
        assert len(creds.s3_access_key) == 20 and len(creds.s3_secret_key) >= 40
    weed_keys = [getattr(creds, k) for k in _WEED_KEYS]
    assert all(len(key) >= 43 for key in weed_keys)  # 256 bits, URL-safe
    assert len(set(weed_keys)) == 4, "one key per check"
    stored = json.loads((tmp_path / "credentials.json").read_text())
    assert stored == dataclasses.asdict(creds) and stored.items() >= old.items()
    assert (tmp_path / "credentials.json").stat().st_mode & 0o777 == 0o600
    assert credentials.load_or_create() == creds, "generated once"
