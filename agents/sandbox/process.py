"""The parent's side of one running sandbox."""

from __future__ import annotations

import json
import os
import resource
import selectors
import signal
import subprocess
import time
from collections.abc import Callable

from agents.sandbox.types import Limits, SandboxResult, SandboxUnavailable

_SIGNAL_OUTCOMES: dict[int, str] = {
    signal.SIGXCPU: "cpu_limit",
    signal.SIGXFSZ: "file_limit",
}


class SandboxProcess:
    """The parent's side of one sandbox: reads its pipes, enforces the wall clock,
    the output caps and cancellation, and reaps it."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        limits: Limits,
        info_r: int,
        status_r: int,
        started: float,
    ) -> None:
        self.proc, self.limits, self.started = proc, limits, started
        self.info_r, self.status_r = info_r, status_r
        self.out = {"stdout": bytearray(), "stderr": bytearray()}
        self.info = bytearray()
        self.child_pid: int | None = None  # the sandbox's PID 1, as we see it
        self.startup: float | None = None
        self.stopped_as: str | None = None  # the outcome of our own kill, if any
        self.escalate_at: float | None = None  # then kill bwrap outside too
        self.truncated = False
        self.init_cpu = 0.0  # seconds, of the PID 1 we reaped ourselves
        self.wait: tuple[int, int, resource.struct_rusage] | None = None

    def collect(self, should_stop: Callable[[], bool] | None) -> SandboxResult:
        assert self.proc.stdout is not None and self.proc.stderr is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout.fileno(), selectors.EVENT_READ, "stdout")
        sel.register(self.proc.stderr.fileno(), selectors.EVENT_READ, "stderr")
        sel.register(self.info_r, selectors.EVENT_READ, "info")
        sel.register(self.status_r, selectors.EVENT_READ, "status")
        deadline = self.started + self.limits.wall_seconds
        next_stop_check = 0.0
        drain_until = 0.0  # once reaped: the pipes' last bytes, a second at most
        try:
            while self.wait is None or (
                sel.get_map() and time.monotonic() < drain_until
            ):
                for key, _ in sel.select(timeout=0.1):
                    self._read(sel, key.fd, str(key.data))
                if self.wait is None:
                    now = time.monotonic()
                    if self.stopped_as is None:
                        if now >= deadline:
                            self._kill("timeout")
                        elif should_stop is not None and now >= next_stop_check:
                            next_stop_check = now + 0.1  # it may cost a query
                            if should_stop():
                                self._kill("cancelled")
                    elif self.escalate_at and time.monotonic() >= self.escalate_at:
                        self._kill_group()
                    self._poll()
                    if self.wait is not None:
                        drain_until = time.monotonic() + 1.0
        finally:
            if self.wait is None:  # we are being interrupted (a Celery time limit)
                self._kill("killed")
                self._kill_group()
                self.wait = os.wait4(self.proc.pid, 0)
                self.proc.returncode = -1
            sel.close()
            self.proc.stdout.close()
            self.proc.stderr.close()
            self._reap_orphaned_init()
        return self._result()

    def _reap_orphaned_init(self) -> None:
        """Waits (a second at most) for the sandbox's PID 1 if it became our child:
        once it is reaped, no process of the sandbox is left."""
        give_up = time.monotonic() + 1.0
        while self.child_pid and time.monotonic() < give_up:
            try:
                pid, _, rusage = os.wait4(self.child_pid, os.WNOHANG)
                if pid:  # it waited for the snippet: the snippet's CPU is in here
                    self.init_cpu = rusage.ru_utime + rusage.ru_stime
                    return
            except ChildProcessError:
                return  # bwrap outside reaped it: it ended first
            time.sleep(0.005)

    def _read(self, sel: selectors.BaseSelector, fd: int, name: str) -> None:
        data = os.read(fd, 65536)
        if not data:
            sel.unregister(fd)
        elif name == "status":
            self.startup = self.startup or time.monotonic()
        elif name == "info":
            self.info += data
            try:
                self.child_pid = json.loads(self.info)["child-pid"]
            except (ValueError, KeyError):
                pass  # not all of it yet
        else:
            buf = self.out[name]
            room = self.limits.output_bytes - len(buf)
            buf += data[: max(room, 0)]
            if len(data) > room:
                self.truncated = True
                sel.unregister(fd)  # stop reading: the kill below ends the writer
                if self.stopped_as is None:
                    self._kill("output_limit")

    def _kill(self, outcome: str) -> None:
        self.stopped_as = outcome
        # Its PID 1: the kernel kills the whole PID namespace, and that PID 1 is
        # reaped (so bwrap outside exits, and we reap it) only once all of it is
        # gone. Killing bwrap outside first would orphan that PID 1.
        if self.child_pid:
            try:
                os.kill(self.child_pid, signal.SIGKILL)
                self.escalate_at = time.monotonic() + 1.0
                return
            except ProcessLookupError:
                pass
        self._kill_group()

    def _kill_group(self) -> None:
        self.escalate_at = None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _poll(self) -> None:
        pid, status, rusage = os.wait4(self.proc.pid, os.WNOHANG)
        if pid:
            self.wait = (pid, status, rusage)
            self.proc.returncode = -1  # reaped here; Popen must not wait again

    def _result(self) -> SandboxResult:
        assert self.wait is not None
        _, status, rusage = self.wait
        ended = time.monotonic()
        stdout = bytes(self.out["stdout"]).decode("utf-8", "replace")
        stderr = bytes(self.out["stderr"]).decode("utf-8", "replace")
        if self.startup is None and self.stopped_as is None and status != 0:
            raise SandboxUnavailable(
                "The sandbox did not start.", details={"stderr": stderr[-2000:]}
            )
        exit_status, sig = _decode(status)
        cpu_ms = int((rusage.ru_utime + rusage.ru_stime + self.init_cpu) * 1000)
        outcome = self.stopped_as or _outcome(
            exit_status, sig, stderr, cpu_ms, self.limits
        )
        return SandboxResult(
            outcome=outcome,
            exit_status=exit_status,
            signal=sig,
            stdout=stdout,
            stderr=stderr,
            truncated=self.truncated,
            duration_ms=int((ended - self.started) * 1000),
            startup_ms=int(((self.startup or ended) - self.started) * 1000),
            cpu_ms=cpu_ms,
        )


def _decode(status: int) -> tuple[int | None, int | None]:
    """bwrap exits 128+N when the snippet died of signal N (the shell's convention;
    a snippet's own sys.exit(129..192) reads as a signal too)."""
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status)
    code = os.waitstatus_to_exitcode(status)
    if 128 < code <= 128 + 64:
        return None, code - 128
    return code, None


def _outcome(
    exit_status: int | None, sig: int | None, stderr: str, cpu_ms: int, limits: Limits
) -> str:
    if sig is not None:
        if sig in _SIGNAL_OUTCOMES:
            return _SIGNAL_OUTCOMES[sig]
        # The hard CPU limit (soft + 1 s) kills a snippet that ignores SIGXCPU.
        if sig == signal.SIGKILL and cpu_ms >= limits.cpu_seconds * 1000:
            return "cpu_limit"
        return "killed"
    if exit_status == 0:
        return "ok"
    last = stderr.rstrip().rpartition("\n")[2]
    if last.startswith("MemoryError"):
        return "memory_limit"
    if "[Errno 27]" in last or "[Errno 28]" in last:  # EFBIG, ENOSPC
        return "file_limit"
    return "error"
