"""The bubblewrap command line of one sandbox, and what the parent sets up for it."""

from __future__ import annotations

import ctypes
import functools
import os
import resource
import shutil
import sys
from collections.abc import Callable

from agents.sandbox.types import Limits, SandboxUnavailable

SNIPPET_PATH = "/sandbox/main.py"
# S108/B108: the sandbox's own private tmpfs, not the host's /tmp
TMP = "/tmp"  # noqa: S108  # nosec B108
MARKER = "kimberly-sandbox"  # in the runner's argv: tests find leftovers by it
_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": TMP,
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONIOENCODING": "utf-8",
    # glibc reserves 64 MiB of address space per thread's malloc arena: without
    # a cap, RLIMIT_AS would allow only a handful of threads.
    "MALLOC_ARENA_MAX": "2",
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
PASSWD = "nobody:x:65534:65534:nobody:/tmp:/usr/sbin/nologin\n"  # noqa: S105
GROUP = "nogroup:x:65534:\n"


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


def sandbox_uid() -> int | None:
    """The uid bwrap runs as when we are root (None: keep ours)."""
    if os.geteuid() != 0:
        return None
    from django.conf import settings

    return int(getattr(settings, "AGENT_SANDBOX_UID", 65533))


@functools.cache
def become_subreaper() -> None:
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


def tasks_of(uid: int) -> int:
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


def memfd(name: str, data: str) -> int:
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


def bwrap_args(limits: Limits, fds: dict[str, int]) -> list[str]:
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


def preexec(limits: Limits, nproc: int) -> Callable[[], None]:
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
