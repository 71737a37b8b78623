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
from dataclasses import dataclass, field
from pathlib import Path

from kimberly.runtime import common, credentials, postgres, seaweed, valkey


@dataclass(frozen=True)
class Service:
    name: str
    url: str  # what logs show (redacted) and `runtime up` prints
    started_here: bool
    env: dict[str, str] = field(default_factory=dict)  # what the settings read


_STOPPERS: dict[str, Callable[[], None]] = {
    "postgres": lambda: postgres.stop_postgres(),
    "valkey": lambda: valkey.stop_valkey(),
    "seaweedfs": lambda: seaweed.stop_seaweed(),
}
# Stop order: the app's stores before the database.
_STOP_ORDER = ("seaweedfs", "valkey", "postgres")
# Naming this variable (NAME or NAME_FILE) means the service is external.
_EXTERNAL = {
    "postgres": "DATABASE_URL",
    "valkey": "REDIS_URL",
    "seaweedfs": "AWS_STORAGE_BUCKET_NAME",
}


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
    return {**env, **discovered_s3_env()}


def discovered_s3_env() -> dict[str, str]:
    """The AWS_* settings of the embedded S3 when it runs, else {} (no side effects)."""
    creds = credentials.load()
    if creds is None or not creds.s3_access_key:
        return {}
    if (port := seaweed.seaweed_port()) is None:
        return {}
    return seaweed.s3_env(port, creds)


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
    return Service("postgres", url, started, {"DATABASE_URL": url})


def _ensure_valkey() -> Service:
    port = valkey.valkey_port()
    if started := port is None:
        port = valkey.start_valkey()
    else:
        valkey.secure_valkey(port)
    url = valkey.valkey_url(port, credentials.load_or_create().valkey)
    return Service("valkey", url, started, {"REDIS_URL": url})


def _ensure_seaweed() -> Service:
    port = seaweed.seaweed_port()
    if started := port is None:
        port = seaweed.start_seaweed()
    elif seaweed.is_legacy():
        port = seaweed.restart_legacy()  # its owner, if any, still stops it
    env = seaweed.s3_env(port, credentials.load_or_create())
    url = f"{env['AWS_S3_ENDPOINT_URL']} (bucket {seaweed.BUCKET})"
    return Service("seaweedfs", url, started, env)


_ENSURERS: dict[str, Callable[[], Service]] = {
    "postgres": _ensure_postgres,
    "valkey": _ensure_valkey,
    "seaweedfs": _ensure_seaweed,
}


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
        for name, ensure_one in _ENSURERS.items():
            if not external(_EXTERNAL[name]):
                services.append(ensure_one())
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
        for name in _STOP_ORDER:
            if _marker(name).exists():
                _STOPPERS[name]()
                _marker(name).unlink(missing_ok=True)
                stopped.append(name)
    return stopped


def stop_all() -> None:
    with common.lock():
        for name in _STOP_ORDER:
            _STOPPERS[name]()
            _marker(name).unlink(missing_ok=True)


def redact(url: str) -> str:
    """`url` without its password, for logs (`runtime status` prints it whole)."""
    return re.sub(r"://([^:@/]*):[^@/]*@", r"://\1:***@", url)


def apply_env(services: list[Service]) -> None:
    for svc in services:
        os.environ.update(svc.env)


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
