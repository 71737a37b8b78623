"""The coder's sandbox, called directly (no policy in front): every escape ends
contained with a clear outcome, and no process of it is left afterwards."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings

from agents import sandbox
from agents.sandbox import Limits, SandboxUnavailable, run_python, sandbox_limits

LIMITS = Limits(cpu_seconds=2, memory_mb=256, wall_seconds=3.0, output_bytes=100_000)


def sandbox_processes() -> list[str]:
    """Live or zombie processes of a sandbox: by the runner's marker in their
    command line, and (run as root) by the dedicated uid, which catches zombies."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            uid = os.stat(f"/proc/{pid}").st_uid
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        by_uid = os.geteuid() == 0 and uid == settings.AGENT_SANDBOX_UID
        if by_uid or sandbox.MARKER.encode() in cmdline:
            found.append(f"{pid} uid={uid} {cmdline[:60]!r}")
    return found


@pytest.fixture(autouse=True)
def no_process_left_behind():
    yield
    assert sandbox_processes() == []


def run(code: str, limits: Limits = LIMITS, **kwargs):
    return run_python(code, limits, **kwargs)


def test_snippet_returns_stdout_stderr_and_exit_status():
    result = run("import sys\nprint('hello')\nprint('oops', file=sys.stderr)")
    assert (result.outcome, result.exit_status, result.signal) == ("ok", 0, None)
    assert (result.stdout, result.stderr) == ("hello\n", "oops\n")
    assert not result.truncated
    assert 0 < result.startup_ms <= result.duration_ms


def test_raising_snippet_is_an_error_with_its_traceback():
    result = run("def f():\n    raise ValueError('bad input')\nf()")
    assert (result.outcome, result.exit_status) == ("error", 1)
    assert 'File "/sandbox/main.py", line 2, in f' in result.stderr
    assert result.stderr.rstrip().endswith("ValueError: bad input")
    assert "<string>" not in result.stderr  # the runner's own frame is cut


def test_non_zero_exit_is_an_error():
    result = run("raise SystemExit(3)")
    assert (result.outcome, result.exit_status) == ("error", 3)


def test_snippet_runs_as_nobody_with_a_clean_environment(monkeypatch):
    monkeypatch.setenv("KIMBERLY_FAKE_SECRET", "s3cr3t-value")
    os.environ["DATABASE_URL_PROBE"] = "postgresql://kimberly:s3cr3t-value@x/y"
    try:
        result = run(
            "import os, json\n"
            "print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(),"
            " 'env': dict(os.environ),"
            " 'init_env': open('/proc/1/environ').read()}))"
        )
    finally:
        del os.environ["DATABASE_URL_PROBE"]
    seen = json.loads(result.stdout)
    assert (seen["uid"], seen["gid"]) == (65534, 65534)
    allowed = {"PATH", "HOME", "LANG", "PWD", "LC_CTYPE", "PYTHONIOENCODING"}
    assert set(seen["env"]) <= allowed | {"PYTHONDONTWRITEBYTECODE", "MALLOC_ARENA_MAX"}
    assert "KIMBERLY_FAKE_SECRET" not in seen["env"]
    assert "s3cr3t-value" not in result.stdout


def test_no_network_not_even_the_hosts_loopback():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        result = run(
            "import socket\n"
            f"for addr in [('127.0.0.1', {port}), ('1.1.1.1', 80), ('8.8.8.8', 53)]:\n"
            "    try:\n"
            "        socket.create_connection(addr, timeout=1)\n"
            "        print('connected', addr)\n"
            "    except OSError as exc:\n"
            "        print('refused', addr, exc.errno)\n"
            "print(socket.if_nameindex())"
        )
    finally:
        listener.close()
    assert result.outcome == "ok"
    assert "connected" not in result.stdout
    assert result.stdout.count("refused") == 3
    assert "'lo'" in result.stdout and "eth" not in result.stdout


def test_shadow_and_the_project_are_not_visible():
    repo = str(settings.BASE_DIR)
    paths = [
        "/etc/shadow",
        repo,
        f"{repo}/manage.py",
        str(settings.VAR_DIR),
        f"{settings.VAR_DIR}/credentials.json",
        sys.prefix,  # the venv
        "/root",
        "/home",
        "/var",
        "/run",
    ]
    result = run(
        "import os, json\n"
        f"print(json.dumps({{p: os.path.exists(p) for p in {paths!r}}}))\n"
        "print(json.dumps([os.listdir('/'), os.listdir('/etc')]))"
    )
    assert result.outcome == "ok", result.stderr
    exists, (root, etc) = map(json.loads, result.stdout.splitlines())
    assert exists == dict.fromkeys(paths, False)
    allowed = {
        "bin",
        "dev",
        "etc",
        "lib",
        "lib64",
        "proc",
        "sandbox",
        "sbin",
        "tmp",
        "usr",
    }
    assert {"usr", "tmp", "proc", "dev"} <= set(root) <= allowed
    assert set(etc) <= {"group", "ld.so.cache", "passwd"}


def test_only_the_private_tmp_is_writable_and_it_starts_empty():
    code = (
        "import os\n"
        "print(os.listdir('/tmp'))\n"
        "open('/tmp/left-here', 'w').write('x')\n"
        "for path in ['/usr/x', '/x', '/dev/shm/x', '/etc/passwd']:\n"
        "    try:\n"
        "        open(path, 'w')\n"
        "        print('wrote', path)\n"
        "    except OSError:\n"
        "        pass\n"
    )
    assert run(code).stdout == "[]\n"
    assert run(code).stdout == "[]\n"  # the last run's file is gone


def test_fork_bomb_is_contained():
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    started = time.monotonic()
    result = run(code, Limits(cpu_seconds=1, wall_seconds=2.0))
    assert result.outcome in {"cpu_limit", "timeout"}
    assert time.monotonic() - started < 4
    # (the autouse fixture checks that none of the forks outlived it)


def test_processes_limit_holds():
    code = (
        "import os, time\n"
        "forked = 0\n"
        "try:\n"
        "    for _ in range(100):\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(10)\n"
        "            os._exit(0)\n"
        "        forked += 1\n"
        "except OSError as exc:\n"
        "    print(forked, exc.errno)"
    )
    result = run(code, Limits(processes=8, wall_seconds=3.0))
    assert result.outcome == "ok", result.stderr
    forked, errno = map(int, result.stdout.split())
    assert (forked < 8, errno) == (True, 11)  # EAGAIN


def test_threads_are_not_starved_by_the_memory_limit():
    code = (
        "import threading, time\n"
        "threads = [threading.Thread(target=time.sleep, args=(0.5,)) for _ in range(20)]\n"
        "for t in threads:\n"
        "    t.start()\n"
        "print(threading.active_count())"
    )
    result = run(code)
    assert (result.outcome, result.stdout) == ("ok", "21\n"), result.stderr


def test_allocating_4_gib_hits_the_memory_limit():
    result = run("block = bytearray(4 << 30)\nprint('allocated')")
    assert (result.outcome, result.exit_status) == ("memory_limit", 1)
    assert result.stdout == ""
    assert result.stderr.rstrip().endswith("MemoryError")


def test_endless_loop_hits_the_cpu_limit():
    result = run("while True:\n    pass", Limits(cpu_seconds=1, wall_seconds=3.0))
    assert result.outcome == "cpu_limit"
    assert result.exit_status is None and result.signal == 24  # SIGXCPU
    assert result.cpu_ms >= 500  # about 1 s, as sampled by the scheduler


def test_sleeping_forever_hits_the_wall_clock():
    result = run("import time\ntime.sleep(60)", Limits(wall_seconds=1.0))
    assert (result.outcome, result.signal) == ("timeout", 9)
    assert 1000 <= result.duration_ms < 2500


def test_writing_a_1_gib_file_hits_the_file_limit():
    code = (
        "with open('/tmp/big', 'wb') as f:\n"
        "    for _ in range(1024):\n"
        "        f.write(b'x' * (1 << 20))"
    )
    result = run(code)
    assert result.outcome == "file_limit"
    assert "File too large" in result.stderr


def test_filling_the_tmp_with_small_files_hits_its_size():
    code = (
        "for i in range(100):\n"
        "    with open(f'/tmp/f{i}', 'wb') as f:\n"
        "        f.write(b'x' * (8 << 20))"
    )
    result = run(code, Limits(file_mb=16, tmp_mb=32))
    assert result.outcome == "file_limit"
    assert "No space left on device" in result.stderr


def test_printing_100_mb_hits_the_output_limit():
    result = run(
        "import sys\nfor _ in range(100):\n    sys.stdout.write('x' * (1 << 20))"
    )
    assert (result.outcome, result.truncated) == ("output_limit", True)
    assert len(result.stdout) == LIMITS.output_bytes
    assert result.duration_ms < 2500


def test_should_stop_cancels_a_running_snippet():
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    result = run(
        "import time\nprint('started', flush=True)\ntime.sleep(30)",
        should_stop=stop.is_set,
    )
    assert result.outcome == "cancelled"
    assert result.stdout == "started\n"
    assert result.duration_ms < 1500


def test_a_sandbox_that_cannot_start_is_unavailable(monkeypatch):
    monkeypatch.setattr(sandbox, "bwrap_path", lambda: "/nonexistent/bwrap")
    with pytest.raises(SandboxUnavailable) as exc:
        sandbox.sandbox_check()
    assert (exc.value.code, exc.value.status) == ("sandbox_unavailable", 503)
    assert "bwrap" in exc.value.message


def test_a_sandbox_bubblewrap_cannot_set_up_is_unavailable_not_a_snippet_error():
    # With not one process to spare, bwrap cannot create the sandbox's processes.
    with pytest.raises(SandboxUnavailable):
        run("print(1)", Limits(processes=0))


def test_sandbox_check_passes_here():
    sandbox.sandbox_check()


def test_limits_come_from_settings_with_the_tasks_timeout(settings):
    settings.AGENT_SANDBOX_CPU_SECONDS = 5
    settings.AGENT_SANDBOX_OUTPUT_BYTES = 1234
    limits = sandbox_limits(42.0)
    assert (limits.cpu_seconds, limits.output_bytes, limits.wall_seconds) == (
        5,
        1234,
        42.0,
    )
    assert limits.memory_mb == settings.AGENT_SANDBOX_MEMORY_MB


def test_should_stop_is_polled_about_every_100_ms_however_busy_the_output():
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return False

    code = "import sys, time\nend = time.time() + 1\nwhile time.time() < end:\n    sys.stdout.write('x')\n    sys.stdout.flush()"
    result = run(
        code,
        Limits(output_bytes=10_000_000),
        should_stop=should_stop,
    )
    assert result.outcome == "ok"
    assert 5 <= len(calls) <= 15
