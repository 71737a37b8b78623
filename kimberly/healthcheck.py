"""`./cli healthcheck`: every dependency of a deployment, checked from here.

The readiness probe's checks (kimberly/health.py: PostgreSQL with pgvector and
this code's migrations, Redis, the broker, object storage), then those the apps
register (kimberly/hooks.py), which only an operator's check can afford: the
embedding model loads and embeds a probe (memory); the model server, when one
is configured, lists its models (chat). Last, a broadcast to the Celery
workers: who consumes each queue the code sends tasks to.

The database role too: row-level security holds only for a role that is
neither a superuser nor BYPASSRLS.

Required: the stores, the database role and the embedding model (without them a part of the
product is down). Optional (their failure is "degraded"): the model server (chat
answers offline without one) and the workers (tasks wait in the queue until one
comes; a queue with none answering says "no worker answered").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from django.conf import settings
from django.db import connections

from kimberly import health, hooks

OK, FAILED, DEGRADED = 0, 1, 2
# How long a store's check may take; one still running then is reported as
# timed out (the apps' checks say how long theirs may take as they register).
CHECK_SECONDS = 15.0
DETAIL_CHARS = 300


@dataclass(frozen=True)
class Row:
    name: str
    ok: bool
    ms: float
    required: bool
    detail: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


Check = Callable[[], str | None]  # raises when the dependency is not fine


def _store(name: str) -> Check:
    check = health.CHECKS[name][0]

    def run() -> None:
        check()

    return run


def database_role() -> str:
    """Row-level security holds only for a role that is neither a superuser nor
    BYPASSRLS (kimberly/rls.py): such a role sees every user's rows."""
    with connections["default"].cursor() as cur:
        cur.execute(
            "SELECT rolname, rolsuper, rolbypassrls FROM pg_roles "
            "WHERE rolname = current_user"
        )
        name, superuser, bypass = cur.fetchone()
    if superuser or bypass:
        what = "a superuser" if superuser else "BYPASSRLS"
        raise RuntimeError(
            f"role {name} is {what}: row-level security does not apply to it; "
            "connect as a role that is neither"
        )
    return f"{name}: row-level security applies"


def queues() -> list[str]:
    """Every queue the code sends tasks to (kimberly/settings/queues.py)."""
    return list(settings.CELERY_QUEUE_NAMES)


def worker_rows(timeout: float) -> list[Row]:
    """One broadcast; each queue's row names the workers that answered for it."""
    from kimberly.celery import app

    started = time.perf_counter()
    try:
        answers = app.control.inspect(timeout=timeout).active_queues() or {}
        error = None
    except Exception as exc:  # noqa: BLE001 - the broker is down: its row says why
        answers, error = {}, _why(exc)
    ms = round((time.perf_counter() - started) * 1000, 1)
    rows = []
    for queue in queues():
        workers = sorted(
            worker
            for worker, consumed in answers.items()
            if any(q.get("name") == queue for q in consumed or [])
        )
        detail = error or (", ".join(workers) if workers else "no worker answered")
        rows.append(Row(f"workers:{queue}", bool(workers), ms, False, detail))
    return rows


def _why(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    return text[:DETAIL_CHARS]


def _run(name: str, check: Check, out: dict[str, tuple[float, bool, str]]) -> None:
    started = time.perf_counter()
    try:
        result = (True, check() or "ok")
    except Exception as exc:  # noqa: BLE001 - a failed check is its row, not a crash
        result = (False, _why(exc))
    finally:
        if threading.current_thread() is not threading.main_thread():
            connections.close_all()
    out[name] = (round((time.perf_counter() - started) * 1000, 1), *result)


def checks() -> list[hooks.HealthCheck]:
    """The stores' checks, then those the apps registered."""
    stores = [
        hooks.HealthCheck(name, _store(name), True, CHECK_SECONDS)
        for name in ("redis", "broker", "storage")
    ]
    return [*stores, *hooks.health_checks.values()]


def run(worker_timeout: float = 2.0) -> list[Row]:
    """Every check, the slow ones side by side; never raises."""
    done: dict[str, tuple[float, bool, str]] = {}
    _run("database", _store("database"), done)  # this thread's connection
    if done["database"][1]:
        _run("database_role", database_role, done)
    todo = checks()
    threads = {}
    for c in todo:
        # daemon threads: a check that hangs must not keep the command alive
        threads[c.name] = threading.Thread(
            target=_run, args=(c.name, c.check, done), daemon=True
        )
        threads[c.name].start()
    # The broadcast too: a broker that hangs must not hang the command.
    workers: list[Row] = []
    asking = threading.Thread(
        target=lambda: workers.extend(worker_rows(worker_timeout)), daemon=True
    )
    asking.start()
    started = time.monotonic()
    for c in todo:
        threads[c.name].join(max(0.0, c.seconds - (time.monotonic() - started)))
    asking.join(max(0.0, worker_timeout + CHECK_SECONDS - (time.monotonic() - started)))
    if not workers:
        detail = "timed out asking the workers"
        workers = [Row(f"workers:{q}", False, 0.0, False, detail) for q in queues()]
    rows = [_row(done, "database", True, CHECK_SECONDS)]
    if "database_role" in done:
        rows.append(_row(done, "database_role", True, CHECK_SECONDS))
    rows += [_row(done, c.name, c.required, c.seconds) for c in todo]
    return [*rows, *workers]


def _row(
    done: dict[str, tuple[float, bool, str]], name: str, required: bool, seconds: float
) -> Row:
    if name not in done:
        return Row(
            name, False, seconds * 1000, required, f"timed out after {seconds:g} s"
        )
    ms, ok, detail = done[name]
    return Row(name, ok, ms, required, detail)


def status(rows: list[Row]) -> int:
    """0 all fine; 1 a required check failed; 2 only optional ones did."""
    if any(r.required and not r.ok for r in rows):
        return FAILED
    return DEGRADED if any(not r.ok for r in rows) else OK
