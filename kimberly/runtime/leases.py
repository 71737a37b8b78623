"""Which command starts, reuses and stops the embedded servers.

Lifetime: a server started by a command is "auto" (marker file) and is stopped
when the last command using it exits: each command holds a lease file while it
runs, so `make test` finishing does not pull the servers from under a `make run`
that reused them. Servers started by `runtime up` have no marker and run until
`runtime down`.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kimberly.runtime import common, credentials, postgres, valkey


@dataclass(frozen=True)
class Service:
    name: str
    url: str
    started_here: bool


_STOPPERS: dict[str, Callable[[], None]] = {
    "postgres": lambda: postgres.stop_postgres(),
    "valkey": lambda: valkey.stop_valkey(),
}
_ENV_KEYS = {"postgres": "DATABASE_URL", "valkey": "REDIS_URL"}


def discovered_env() -> dict[str, str]:
    """URLs (with credentials) of embedded servers running now (no side effects).

    A server older code started, before there were credentials, is left out until
    a command upgrades it.
    """
    env: dict[str, str] = {}
    creds = credentials.load()
    if creds is None:
        return env
    if (port := postgres.postgres_port()) is not None and not postgres.is_legacy():
        env["DATABASE_URL"] = postgres.postgres_url(port, creds)
        env["DATABASE_ADMIN_URL"] = postgres.postgres_url(port, creds, admin=True)
    if (vport := valkey.valkey_port()) is not None:
        env["REDIS_URL"] = valkey.valkey_url(vport, creds.valkey)
    return env


def external(name: str) -> bool:
    """True when the environment names the server (NAME or NAME_FILE)."""
    return bool(os.environ.get(name) or os.environ.get(f"{name}_FILE"))


def _marker(name: str) -> Path:
    return common.var_dir() / f".{name}.auto"


def _leases() -> Path:
    return common.var_dir() / ".leases"


def _ensure_postgres() -> Service:
    port = postgres.postgres_port()
    if started := port is None:
        port = postgres.start_postgres()
    elif postgres.is_legacy():
        postgres.secure_postgres(port)
    url = postgres.postgres_url(port, credentials.load_or_create())
    return Service("postgres", url, started)


def _ensure_valkey() -> Service:
    port = valkey.valkey_port()
    if started := port is None:
        port = valkey.start_valkey()
    else:
        valkey.secure_valkey(port)
    url = valkey.valkey_url(port, credentials.load_or_create().valkey)
    return Service("valkey", url, started)


def ensure(*, auto_stop: bool = True, lease: Path | None = None) -> list[Service]:
    """Start whichever embedded servers the environment does not provide.

    With `lease`, the caller's lease is taken under the same lock, so a command
    exiting at that moment cannot stop the servers between the two steps.
    """
    services: list[Service] = []
    with common.lock():
        if lease is not None:
            _leases().mkdir(parents=True, exist_ok=True)
            lease.touch()
        if not external("DATABASE_URL"):
            services.append(_ensure_postgres())
        if not external("REDIS_URL"):
            services.append(_ensure_valkey())
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
    with common.lock():
        lease.unlink(missing_ok=True)
        live = []
        for other in _leases().glob("*"):
            if common.pid_alive(int(other.name.split("-")[0])):
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


def stop_all() -> None:
    with common.lock():
        for name in ("postgres", "valkey"):
            _STOPPERS[name]()
            _marker(name).unlink(missing_ok=True)


def redact(url: str) -> str:
    """`url` without its password, for logs (`runtime status` prints it whole)."""
    return re.sub(r"://([^:@/]*):[^@/]*@", r"://\1:***@", url)


def apply_env(services: list[Service]) -> None:
    for svc in services:
        os.environ[_ENV_KEYS[svc.name]] = svc.url


def ensure_local_secret_key() -> None:
    """Local runs with no SECRET_KEY get a random one kept in var/ (never in git)."""
    if os.environ.get("SECRET_KEY") or os.environ.get("SECRET_KEY_FILE"):
        return
    path = common.var_dir() / "secret_key"
    if not path.exists():
        import secrets

        path.parent.mkdir(parents=True, exist_ok=True)
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
            url = redact(svc.url)
            print(f"[runtime] {how} {svc.name} at {url}", file=sys.stderr)
    try:
        yield services
    finally:
        for name in release(lease):
            if not quiet:
                print(f"[runtime] stopped {name}", file=sys.stderr)
