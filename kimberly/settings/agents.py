"""Settings of the agents: task limits, time limits, retries and scans; the deny
list, the coder's code policy and its sandbox (imported by base.py)."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from kimberly.env import env_float, env_int, env_list

# --- Tasks -----------------------------------------------------------------------
# Per user (SPEC §4): this many run at once, the rest wait; this many may wait.
AGENT_MAX_RUNNING = env_int("AGENT_MAX_RUNNING", 3)
AGENT_MAX_QUEUED = env_int("AGENT_MAX_QUEUED", 100)
# A task's timeout is the Celery soft limit; the hard limit (the process is
# killed) comes this much later, so the soft limit can end the task cleanly.
AGENT_HARD_LIMIT_GRACE_SECONDS = env_int("AGENT_HARD_LIMIT_GRACE_SECONDS", 10)
# Executions of an idempotent task that fails unexpectedly (a bug, a lost worker);
# a bad request or a time-out is never retried, nor is a non-idempotent task.
AGENT_TASK_MAX_ATTEMPTS = env_int("AGENT_TASK_MAX_ATTEMPTS", 3)
AGENT_TASK_TEXT_MAX_CHARS = env_int("AGENT_TASK_TEXT_MAX_CHARS", 4000)
AGENT_PARAMS_MAX_BYTES = env_int("AGENT_PARAMS_MAX_BYTES", 200_000)
# A task handed to the broker but not started this long after is sent again,
# under the same claim (whichever copy arrives first runs it; the other finds it
# taken), in case its message was lost in the broker.
AGENT_DISPATCH_STALE_SECONDS = env_int("AGENT_DISPATCH_STALE_SECONDS", 600)
AGENT_SWEEP_SECONDS = env_float("AGENT_SWEEP_SECONDS", 60.0)
# Due reminders are delivered by a scan this often.
AGENT_REMINDER_SCAN_SECONDS = env_float("AGENT_REMINDER_SCAN_SECONDS", 30.0)
# How many memories each of the researcher's sub-queries reads.
AGENT_RESEARCH_PER_QUERY = env_int("AGENT_RESEARCH_PER_QUERY", 5)

# Agent task executions run on their own queue and worker: AGENT_QUEUE and
# the routes are in kimberly/settings/queues.py.
# Events one .ics import may hold.
AGENT_ICS_MAX_EVENTS = env_int("AGENT_ICS_MAX_EVENTS", 1000)

# Agent types an operator refuses outright, whatever their switch says
# (comma-separated names, e.g. "coder,researcher").
AGENT_DENY_TYPES = env_list("AGENT_DENY_TYPES", [])

# --- The coder's static code policy (agents/policy.py) ---------------------------
# The sandbox is the boundary; this check is not. It refuses, before anything runs,
# code that plainly reaches for what the sandbox takes away (other processes,
# sockets, foreign calls, code the check cannot see), so the attempt is refused and
# recorded as a violation instead of failing opaquely inside. A module denies its
# submodules too (os would deny os.path); an import by a computed name is refused.
AGENT_CODER_DENY_MODULES = env_list(
    "AGENT_CODER_DENY_MODULES",
    [
        "ctypes",  # foreign calls: anything the C library can do
        "cffi",
        "socket",  # connections and servers (there is no network: say so early)
        "socketserver",
        "ssl",
        "http.client",
        "http.server",
        "urllib.request",
        "ftplib",
        "smtplib",
        "poplib",
        "imaplib",
        "telnetlib",
        "xmlrpc",
        "subprocess",  # other programs and processes
        "multiprocessing",
        "pty",
        "posix",  # os without os: its calls escape the deny list below
        "_posixsubprocess",
        "code",  # an interpreter over strings
        "codeop",
    ],
)
# Dotted names of calls refused wherever they are named, called or not (`from os
# import system` then `system()` is os.system); a trailing * is a family. eval,
# exec and compile run strings this check cannot see.
AGENT_CODER_DENY_CALLS = env_list(
    "AGENT_CODER_DENY_CALLS",
    [
        "os.system",
        "os.popen",
        "os.fork",
        "os.forkpty",
        "os.exec*",
        "os.spawn*",
        "os.posix_spawn*",
        "eval",
        "exec",
        "compile",
        "breakpoint",
    ],
)
# Longest snippet, in characters (longer: 400 code_too_large).
AGENT_CODER_MAX_CODE_CHARS = env_int("AGENT_CODER_MAX_CODE_CHARS", 100_000)

# --- The coder's sandbox (agents/sandbox/) -------------------------------------
# Per run: CPU seconds, address space per process, largest file, tasks (processes
# and threads) it may add, open files, bytes kept of stdout and of stderr each,
# and the size of its private /tmp (a tmpfs: memory). The wall clock is the task's
# timeout.
AGENT_SANDBOX_CPU_SECONDS = env_int("AGENT_SANDBOX_CPU_SECONDS", 10)
AGENT_SANDBOX_MEMORY_MB = env_int("AGENT_SANDBOX_MEMORY_MB", 256)
AGENT_SANDBOX_FILE_MB = env_int("AGENT_SANDBOX_FILE_MB", 16)
AGENT_SANDBOX_PROCESSES = env_int("AGENT_SANDBOX_PROCESSES", 32)
AGENT_SANDBOX_OPEN_FILES = env_int("AGENT_SANDBOX_OPEN_FILES", 64)
AGENT_SANDBOX_OUTPUT_BYTES = env_int("AGENT_SANDBOX_OUTPUT_BYTES", 1_000_000)
AGENT_SANDBOX_TMP_MB = env_int("AGENT_SANDBOX_TMP_MB", 32)
# Run as root (a developer machine), the sandbox first drops to this otherwise
# unused uid and gid, so that RLIMIT_NPROC (not enforced for root) holds and no
# other process shares its count. Ignored when not root (the container).
AGENT_SANDBOX_UID = env_int("AGENT_SANDBOX_UID", 65533)
for _name in (
    "AGENT_SANDBOX_CPU_SECONDS",
    "AGENT_SANDBOX_MEMORY_MB",
    "AGENT_SANDBOX_FILE_MB",
    "AGENT_SANDBOX_PROCESSES",
    "AGENT_SANDBOX_OPEN_FILES",
    "AGENT_SANDBOX_OUTPUT_BYTES",
    "AGENT_SANDBOX_TMP_MB",
    "AGENT_CODER_MAX_CODE_CHARS",
):
    if globals()[_name] < 1:
        raise ImproperlyConfigured(f"{_name} must be at least 1")
if not 0 < AGENT_SANDBOX_UID < 65534:
    raise ImproperlyConfigured("AGENT_SANDBOX_UID must be between 1 and 65533")
