"""Shared bench bootstrap: a dedicated database on the embedded (or given) server."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def django_for_bench(db_name: str) -> None:
    """Point Django at database `db_name` (created and migrated if needed)."""
    import psycopg

    from kimberly import runtime

    if not os.environ.get("DATABASE_URL"):
        runtime.ensure(auto_stop=False)
        os.environ.update(runtime.discovered_env())
    runtime.ensure_local_secret_key()
    base = os.environ["DATABASE_URL"]
    admin_url = base.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [db_name]
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{db_name}"')
    os.environ["DATABASE_URL"] = base.rsplit("/", 1)[0] + f"/{db_name}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kimberly.settings.base")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def copy_rows(cur, sql: str, rows, types: list[str] | None = None) -> None:  # type: ignore[no-untyped-def]
    """COPY `rows` with psycopg; `types` for FORMAT BINARY (e.g. vector columns)."""
    with cur.copy(sql) as copy:
        if types:
            copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def start_gunicorn(port: int) -> Any:
    """A real gunicorn (2 workers x 4 threads, `make run`'s config) on `port`,
    rate limits off, once /v1/health answers; the caller terminates it."""
    import http.client
    import subprocess
    import time

    env = {
        **os.environ,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "LOG_LEVEL": "WARNING",
        "GUNICORN_WORKERS": "2",
        "GUNICORN_THREADS": "4",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        # many requests a minute from one user and one address is the point
        "RATE_LIMIT_ENABLED": "false",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    server = subprocess.Popen(
        [str(ROOT / ".venv/bin/gunicorn"), "kimberly.wsgi", "--config",
         "python:kimberly.gunicorn_conf"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(120):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/v1/health")
            if c.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(1)
    server.terminate()
    raise SystemExit("gunicorn did not come up")


def machine() -> str:
    import platform

    return f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}"


def log(msg: str) -> None:
    import time

    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def pct(values: list[float], p: float) -> float:
    """The p-th percentile of `values` (nearest rank)."""
    values = sorted(values)
    return values[max(0, min(len(values) - 1, round(p / 100 * (len(values) - 1))))]


def longmemeval() -> tuple[list[str], list[str]]:
    """Memory texts and questions of the development sets (../shared/bench)."""
    import json

    texts, questions = [], []
    # ../shared beside the main checkout; ../../shared from a worktree in /work/wt
    where = [d / "shared" / "bench" for d in (ROOT.parent, ROOT.parent.parent)]
    found = next((d for d in where if d.is_dir()), where[0])
    for f in sorted(found.glob("*.jsonl")):
        for line in f.open():
            rec = json.loads(line)
            texts += [m["text"].removeprefix("User: ") for m in rec["memories"]]
            questions += [q["q"] for q in rec["queries"]]
    return texts, list(dict.fromkeys(questions))
