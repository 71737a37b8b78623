"""The sandbox's limits, its result and its one error."""

from __future__ import annotations

from dataclasses import dataclass

from kimberly.api.errors import ApplicationError


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int = 10
    memory_mb: int = 256  # address space (RLIMIT_AS) of each process
    file_mb: int = 16  # largest file the snippet may write (RLIMIT_FSIZE)
    processes: int = 32  # tasks (processes and threads) the snippet may add
    open_files: int = 64
    wall_seconds: float = 30.0
    output_bytes: int = 1_000_000  # per stream (stdout, stderr)
    tmp_mb: int = 32  # size of the private /tmp (tmpfs: it is memory)


@dataclass(frozen=True)
class SandboxResult:
    # ok | error (non-zero exit) | timeout (wall clock) | cpu_limit | memory_limit
    # | output_limit | file_limit | cancelled (should_stop) | killed (other signal)
    outcome: str
    exit_status: int | None
    signal: int | None
    stdout: str
    stderr: str
    truncated: bool
    duration_ms: int
    startup_ms: int  # spawn until the interpreter inside ran the runner's first line
    cpu_ms: int = 0  # user + system CPU of the whole sandbox


class SandboxUnavailable(ApplicationError):
    code = "sandbox_unavailable"
    status = 503
