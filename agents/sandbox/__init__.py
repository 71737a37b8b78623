"""The coder agent's sandbox: one Python snippet in a bubblewrap container.

What the snippet gets: its own user, PID, network, IPC, UTS and mount namespaces
(no network: only a loopback of its own), uid/gid 65534 inside, a
read-only /usr (the system interpreter and its standard library, run with
`-I -S`: no site-packages, no environment), a generated /etc/passwd and /etc/group,
fresh /proc and /dev, and a private size-limited tmpfs /tmp as its only writable
place. Nothing of the project, its var/, its venv, /root or /home is mounted.

Limits: setrlimit before bwrap execs (CPU seconds, address space, file size, open
files, processes, no core files), a tmpfs size, and in the parent a wall clock, a
cap on each output stream and a cancel check. Every stop kills the sandbox's PID 1,
and the kernel then kills every process in its PID namespace before that PID 1 is
reaped, so when run_python returns no process of the snippet is left.

RLIMIT_NPROC counts every task of the real uid and is not enforced for root. Run
as root (a developer machine), the sandbox therefore drops to a dedicated uid
(AGENT_SANDBOX_UID) before exec'ing bwrap; run as a non-root user (the container,
uid 10001), the limit is set to that uid's current tasks plus `processes`.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable

from agents.sandbox.command import (
    GROUP,
    MARKER,
    PASSWD,
    become_subreaper,
    bwrap_args,
    bwrap_path,
    memfd,
    preexec,
    sandbox_uid,
    tasks_of,
)
from agents.sandbox.process import SandboxProcess
from agents.sandbox.types import Limits, SandboxResult, SandboxUnavailable

DEFAULT_LIMITS = Limits()

__all__ = [
    "DEFAULT_LIMITS",
    "MARKER",
    "Limits",
    "SandboxResult",
    "SandboxUnavailable",
    "run_python",
    "sandbox_check",
    "sandbox_limits",
]


def run_python(
    code: str,
    limits: Limits = DEFAULT_LIMITS,
    *,
    should_stop: Callable[[], bool] | None = None,
) -> SandboxResult:
    """Runs `code` in a fresh sandbox; returns how it ended (never raises for the
    snippet's own failures). SandboxUnavailable when the sandbox cannot start."""
    if not os.access(bwrap_path(), os.X_OK):
        raise SandboxUnavailable("bubblewrap (bwrap) is not installed.")
    become_subreaper()
    uid = sandbox_uid()
    nproc = tasks_of(os.getuid() if uid is None else uid) + limits.processes
    info_r, info_w = os.pipe()
    status_r, status_w = os.pipe()
    fds = {
        "passwd": memfd("passwd", PASSWD),
        "group": memfd("group", GROUP),
        "code": memfd("snippet", code),
        "info": info_w,
        "status": status_w,
    }
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            bwrap_args(limits, fds),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd="/",
            env={},
            pass_fds=tuple(fds.values()),
            start_new_session=True,  # its own process group, to kill as one
            user=uid,
            group=uid,
            extra_groups=[] if uid is not None else None,
            preexec_fn=preexec(limits, nproc),
        )
    except OSError as exc:
        for fd in (info_r, status_r):
            os.close(fd)
        raise SandboxUnavailable(f"bubblewrap could not be started: {exc}") from exc
    finally:
        for fd in fds.values():
            os.close(fd)
    try:
        run = SandboxProcess(proc, limits, info_r, status_r, started)
        return run.collect(should_stop)
    finally:
        for fd in (info_r, status_r):
            os.close(fd)


def sandbox_check() -> None:
    """Raises SandboxUnavailable, saying why, unless a snippet can run here."""
    if not os.access(bwrap_path(), os.X_OK):
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is not installed: apt-get install bubblewrap."
        )
    result = run_python("print('ok')", Limits(wall_seconds=10.0))
    if result.outcome != "ok" or result.stdout.strip() != "ok":
        raise SandboxUnavailable(
            f"The sandbox ran but did not work ({result.outcome}): "
            f"{result.stderr[-500:]}"
        )


def sandbox_limits(timeout: float) -> Limits:
    """The operator's limits from settings, with the task's wall-clock timeout."""
    from django.conf import settings

    return Limits(
        cpu_seconds=settings.AGENT_SANDBOX_CPU_SECONDS,
        memory_mb=settings.AGENT_SANDBOX_MEMORY_MB,
        file_mb=settings.AGENT_SANDBOX_FILE_MB,
        processes=settings.AGENT_SANDBOX_PROCESSES,
        open_files=settings.AGENT_SANDBOX_OPEN_FILES,
        wall_seconds=timeout,
        output_bytes=settings.AGENT_SANDBOX_OUTPUT_BYTES,
        tmp_mb=settings.AGENT_SANDBOX_TMP_MB,
    )
