"""The coder agent's sandbox: one Python snippet in a bubblewrap container.

What the snippet gets: its own user, PID, network, IPC, UTS and mount namespaces
(no network at all, not even the host's loopback), uid/gid 65534 inside, a
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

import ctypes
import functools
import json
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from kimberly.api.errors import ApplicationError

SNIPPET_PATH = "/sandbox/main.py"
TMP = "/tmp"  # noqa: S108 - the sandbox's own private tmpfs, not the host's
MARKER = "kimberly-sandbox"  # in the runner's argv: tests find leftovers by it
_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": TMP,
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONIOENCODING": "utf-8",
}
# -c runner: reports "started" on the status fd, closes it, then runs the snippet
# as __main__ with the runner's own frame cut from tracebacks.
_RUNNER = f"""# {MARKER}
import os, sys
os.write(int(sys.argv[1]), b"s"); os.close(int(sys.argv[1]))
def _hook(t, e, tb, _h=sys.__excepthook__): _h(t, e.with_traceback(tb and tb.tb_next), tb and tb.tb_next)
sys.excepthook = _hook; sys.argv = [{SNIPPET_PATH!r}]
with open({SNIPPET_PATH!r}, encoding="utf-8") as _f: _c = compile(_f.read(), {SNIPPET_PATH!r}, "exec")
exec(_c, {{"__name__": "__main__", "__file__": {SNIPPET_PATH!r}, "__builtins__": __builtins__}})
"""
_PR_SET_CHILD_SUBREAPER = 36
_PASSWD = "nobody:x:65534:65534:nobody:/tmp:/usr/sbin/nologin\n"  # noqa: S105
_GROUP = "nogroup:x:65534:\n"
_SIGNAL_OUTCOMES = {
    signal.SIGXCPU: "cpu_limit",
    signal.SIGXFSZ: "file_limit",
}


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


def bwrap_path() -> str:
    return shutil.which("bwrap") or "/usr/bin/bwrap"


@functools.cache
def interpreter() -> str:
    """The system Python under /usr (the venv lives in the project: never mounted)."""
    minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [
        os.path.realpath(sys._base_executable),  # type: ignore[attr-defined]
        f"/usr/bin/{minor}",
        f"/usr/local/bin/{minor}",
        "/usr/bin/python3",
        "/usr/local/bin/python3",
    ]
    for path in candidates:
        real = os.path.realpath(path)
        if real.startswith("/usr/") and os.access(real, os.X_OK):
            return real
    raise SandboxUnavailable("No Python interpreter under /usr for the sandbox.")


def _sandbox_uid() -> int | None:
    """The uid bwrap runs as when we are root (None: keep ours)."""
    if os.geteuid() != 0:
        return None
    from django.conf import settings

    return int(getattr(settings, "AGENT_SANDBOX_UID", 65533))


@functools.cache
def _become_subreaper() -> None:
    """With a PID namespace, bwrap outside exits as soon as the snippet's main
    process does, and the sandbox's PID 1 (killed then, by --die-with-parent) is
    orphaned. As a subreaper we inherit it and reap it, instead of leaving a
    zombie to a PID 1 (in the container: gunicorn or Celery) that never reaps it,
    and that counts against the uid's RLIMIT_NPROC while it lasts."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise SandboxUnavailable(
            f"prctl(PR_SET_CHILD_SUBREAPER) failed: {os.strerror(ctypes.get_errno())}"
        )


def _tasks_of(uid: int) -> int:
    """Tasks (threads count for RLIMIT_NPROC) the real uid has now."""
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
            except OSError:
                continue
    return count


def _memfd(name: str, data: str) -> int:
    fd = os.memfd_create(name, 0)
    os.write(fd, data.encode("utf-8", "surrogatepass"))
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _root_links() -> list[str]:
    """/bin, /lib, /lib64, /sbin as on the host: symlinks into /usr, or read-only."""
    args: list[str] = []
    for name in ("/bin", "/lib", "/lib64", "/sbin"):
        if os.path.islink(name):
            args += ["--symlink", os.readlink(name), name]
        elif os.path.isdir(name):
            args += ["--ro-bind", name, name]
    return args


def _bwrap_args(limits: Limits, fds: dict[str, int]) -> list[str]:
    # fmt: off
    args = [
        bwrap_path(),
        "--unshare-all",  # user, pid, net, ipc, uts, cgroup (and mount)
        "--unshare-user",
        "--disable-userns",  # no nested user namespace from inside
        "--die-with-parent",
        "--new-session",  # no TIOCSTI into a terminal of ours
        "--cap-drop", "ALL",
        "--uid", "65534", "--gid", "65534",
        "--hostname", "sandbox",
        "--ro-bind", "/usr", "/usr",
        *_root_links(),
        "--proc", "/proc",
        "--dev", "/dev",
        "--size", str(limits.tmp_mb << 20), "--tmpfs", TMP,
        "--ro-bind-data", str(fds["passwd"]), "/etc/passwd",
        "--ro-bind-data", str(fds["group"]), "/etc/group",
        "--ro-bind-data", str(fds["code"]), SNIPPET_PATH,
    ]
    # fmt: on
    if os.path.exists("/etc/ld.so.cache"):  # /usr/local/lib (python:*-slim) needs it
        args += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    # The root tmpfs and /dev (whose /dev/shm is an unbounded tmpfs directory)
    # read-only: /tmp, with its size, is the only place the snippet can write.
    args += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", TMP]
    args += ["--info-fd", str(fds["info"]), "--clearenv"]
    for key, value in _ENV.items():
        args += ["--setenv", key, value]
    return [
        *args,
        interpreter(),
        *("-I", "-S", "-B", "-X", "utf8", "-c", _RUNNER, str(fds["status"])),
    ]


def _preexec(limits: Limits, nproc: int) -> Callable[[], None]:
    def apply() -> None:
        # Runs in the child after subprocess dropped to the sandbox uid (if any).
        for which, value in (
            (resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1)),
            (resource.RLIMIT_AS, (limits.memory_mb << 20,) * 2),
            (resource.RLIMIT_FSIZE, (limits.file_mb << 20,) * 2),
            (resource.RLIMIT_NOFILE, (limits.open_files,) * 2),
            (resource.RLIMIT_NPROC, (nproc,) * 2),
            (resource.RLIMIT_CORE, (0, 0)),
        ):
            resource.setrlimit(which, value)

    return apply


def run_python(
    code: str,
    limits: Limits = Limits(),  # frozen: a shared default is safe
    *,
    should_stop: Callable[[], bool] | None = None,
) -> SandboxResult:
    """Runs `code` in a fresh sandbox; returns how it ended (never raises for the
    snippet's own failures). SandboxUnavailable when the sandbox cannot start."""
    if not os.access(bwrap_path(), os.X_OK):
        raise SandboxUnavailable("bubblewrap (bwrap) is not installed.")
    _become_subreaper()
    uid = _sandbox_uid()
    nproc = _tasks_of(os.getuid() if uid is None else uid) + limits.processes
    info_r, info_w = os.pipe()
    status_r, status_w = os.pipe()
    fds = {
        "passwd": _memfd("passwd", _PASSWD),
        "group": _memfd("group", _GROUP),
        "code": _memfd("snippet", code),
        "info": info_w,
        "status": status_w,
    }
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            _bwrap_args(limits, fds),
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
            preexec_fn=_preexec(limits, nproc),
        )
    except OSError as exc:
        for fd in (info_r, status_r):
            os.close(fd)
        raise SandboxUnavailable(f"bubblewrap could not be started: {exc}") from exc
    finally:
        for fd in fds.values():
            os.close(fd)
    try:
        run = _Run(proc, limits, info_r, status_r, started)
        return run.collect(should_stop)
    finally:
        for fd in (info_r, status_r):
            os.close(fd)


class _Run:
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
        self.wait: tuple[int, int, resource.struct_rusage] | None = None

    def collect(self, should_stop: Callable[[], bool] | None) -> SandboxResult:
        assert self.proc.stdout is not None and self.proc.stderr is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout.fileno(), selectors.EVENT_READ, "stdout")
        sel.register(self.proc.stderr.fileno(), selectors.EVENT_READ, "stderr")
        sel.register(self.info_r, selectors.EVENT_READ, "info")
        sel.register(self.status_r, selectors.EVENT_READ, "status")
        deadline = self.started + self.limits.wall_seconds
        drain_until = 0.0  # once reaped: the pipes' last bytes, a second at most
        try:
            while self.wait is None or (
                sel.get_map() and time.monotonic() < drain_until
            ):
                for key, _ in sel.select(timeout=0.1):
                    self._read(sel, key.fd, str(key.data))
                if self.wait is None:
                    if self.stopped_as is None:
                        if time.monotonic() >= deadline:
                            self._kill("timeout")
                        elif should_stop is not None and should_stop():
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
                if os.waitpid(self.child_pid, os.WNOHANG)[0]:
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
        cpu_ms = int((rusage.ru_utime + rusage.ru_stime) * 1000)
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
