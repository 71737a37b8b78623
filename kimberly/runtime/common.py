"""Paths, process probes and the lock shared by the embedded servers."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent.parent
# Read at call time by every helper below, so a test can point it elsewhere.
VAR_DIR = Path(os.environ.get("KIMBERLY_VAR_DIR", BASE_DIR / "var")).resolve()
HOST = "127.0.0.1"


def var_dir() -> Path:
    return VAR_DIR


def pg_data() -> Path:
    return VAR_DIR / "pg"


def valkey_dir() -> Path:
    return VAR_DIR / "valkey"


def seaweed_dir() -> Path:
    return VAR_DIR / "seaweed"


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only (0600), replacing it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    tmp.replace(path)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def pid_alive(pid: int) -> bool:
    """True while `pid` runs. A zombie (exited, not yet reaped by a parent that
    still runs, e.g. a server `runtime down` stopped under a `make run`) is dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        # The state follows the parenthesised command name, which may hold spaces.
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def proc_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def port_open(port: int) -> bool:
    with (
        contextlib.suppress(OSError),
        socket.create_connection((HOST, port), timeout=0.5),
    ):
        return True
    return False


def live_port(pid: int, port: int, name: str, pidfile: Path) -> int | None:
    """`port` when process `pid` is our `name` server answering on it, else None.

    A pid file naming a dead or foreign process (left by a crash; the pid may be
    reused) is removed, so the server can start again.
    """
    alive = pid_alive(pid) and name in proc_cmdline(pid)
    if alive and port_open(port):
        return port
    if not alive:
        pidfile.unlink(missing_ok=True)
    return None


@contextlib.contextmanager
def lock() -> Iterator[None]:
    """Serialize start/stop across concurrent commands (two `make test`s at once)."""
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    with open(VAR_DIR / ".runtime.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
