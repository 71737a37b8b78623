"""Agent tasks through the real stack: 200 reminder and researcher tasks from 20 users.

Starts the Procfile's processes with honcho, as `make run` does (gunicorn, the
default worker, the agents worker of AGENT_CONCURRENCY processes, beat), on a
fresh database of the embedded servers. Each of 20 users gets a few memories,
then all users submit their tasks at once (half reminders, half research
questions) through POST /v1/agents/tasks. The rows in PostgreSQL say when each
task was accepted, started and finished:

- queue wait = started - accepted (the per-user limit of 3 running holds the
  rest back, as does the worker's concurrency), run time = finished - started;
- no task lost (every one succeeded) and none run twice (one execution each,
  one reminder per reminder task);
- sandbox start-up: coder runs of `print(1)`, the sandbox's own start-up
  (until the interpreter inside ran its first line) and the whole run.

    .venv/bin/python bench/agent_tasks.py            # 20 users x 10 tasks
    .venv/bin/python bench/agent_tasks.py --users 5 --per-user 4 --name agent_tasks_small
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from _setup import ROOT, machine, pct
from embed_import import _commit, _free_port, _load, _servers, stack_env, start_stack
from embed_latency import signed_up
from memory_api import Client

DB_NAME = "kimberly_bench_agents"
FACTS = [
    "My sister Ana lives in Porto and works as an architect",
    "I take my coffee black, no sugar",
    "The car's next service is due in March",
    "My favourite tea is a smoky lapsang souchong",
    "I am training for a half marathon in the spring",
]
QUESTIONS = [
    "What do I know about my sister and where does she live?",
    "Research my coffee and tea habits",
    "What did I note about the car?",
    "Summarize my training plans",
    "Tell me about Porto and architecture",
]


def _fresh_database(server: str) -> str:
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    return f"{server}/{DB_NAME}"


def _post(c: Client, body: dict[str, Any]) -> str:
    status, got, _ = c.call("POST", "/v1/agents/tasks", body)
    assert status == 202, (status, got)
    return str(got["task_id"])


def _user_tasks(c: Client, n: int) -> list[str]:
    ids = []
    for i in range(n):
        if i % 2 == 0:
            body = {"task": f"remind me to stretch in {i + 2} hours"}
        else:
            body = {"task": QUESTIONS[i // 2 % len(QUESTIONS)]}
        ids.append(_post(c, body))
    return ids


def _wait(db_url: str, ids: list[str], timeout: float) -> list[tuple[Any, ...]]:
    pks = [i.removeprefix("tsk_") for i in ids]
    sql = (
        "SELECT agent, status, attempts, created_at, started_at, finished_at, result"
        " FROM agents_agenttask WHERE id = ANY(%s::uuid[])"
    )
    deadline = time.monotonic() + timeout
    with psycopg.connect(db_url, autocommit=True) as conn:
        while True:
            rows = conn.execute(sql, [pks]).fetchall()
            done = [r for r in rows if r[1] not in ("queued", "running")]
            if len(done) == len(ids) or time.monotonic() > deadline:
                return rows
            time.sleep(0.5)


def _seconds(
    rows: list[tuple[Any, ...]], agent: str | None, a: int, b: int
) -> list[float]:
    return [
        (r[b] - r[a]).total_seconds()
        for r in rows
        if (agent is None or r[0] == agent) and r[a] and r[b]
    ]


def _line(name: str, values: list[float]) -> str:
    if not values:
        return f"| {name} | 0 | - | - | - |"
    return (
        f"| {name} | {len(values)} | {pct(values, 50):.3f} | {pct(values, 95):.3f}"
        f" | {max(values):.3f} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--per-user", type=int, default=10)
    ap.add_argument("--coder-runs", type=int, default=20)
    ap.add_argument("--name", default="agent_tasks")
    args = ap.parse_args()
    server, redis_url = _servers()
    db_url = _fresh_database(server)
    port = _free_port()
    env = stack_env(ROOT, db_url, redis_url, port)
    env["AGENTS_METRICS_PORT"] = str(_free_port())
    res: dict[str, Any] = {"load_before": _load(), "commit": _commit(ROOT)}
    stack = start_stack(ROOT, env, port)
    try:
        users = [signed_up(stack.base, f"agents{i}") for i in range(args.users)]
        for c in users:
            for fact in FACTS:
                body = {"type": "long-term", "content": fact}
                status, got, _ = c.call("POST", "/v1/memory", body)
                assert status == 201, got
        # Warm-up: each agents process loads the embedding model on its first query.
        warm = [_post(users[0], {"task": QUESTIONS[0]}) for _ in range(3)]
        _wait(db_url, warm, 300)
        t0 = time.monotonic()
        with ThreadPoolExecutor(len(users)) as pool:
            ids = [
                i
                for got in pool.map(lambda c: _user_tasks(c, args.per_user), users)
                for i in got
            ]
        res["submit_seconds"] = time.monotonic() - t0
        rows = _wait(db_url, ids, 900)
        res["all_seconds"] = time.monotonic() - t0
        res["rows"] = rows
        coder = [
            _post(
                users[i % len(users)],
                {"agent": "coder", "task": "run", "params": {"code": "print(1)"}},
            )
            for i in range(args.coder_runs)
        ]
        res["coder"] = _wait(db_url, coder, 300)
        with psycopg.connect(db_url) as conn:
            res["reminders"] = conn.execute(
                "SELECT count(*), count(DISTINCT task_id) FROM agents_reminder"
            ).fetchone()
        res["load_after"] = _load()
    finally:
        stack.stop()
    text = report(args, res)
    out = ROOT / "bench" / "reports" / f"{args.name}.md"
    out.write_text(text)
    print(text)
    print(f"wrote {out}; stack log {stack.log}")


def report(args: argparse.Namespace, res: dict[str, Any]) -> str:
    rows = res["rows"]
    total = args.users * args.per_user
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[r[1]] = statuses.get(r[1], 0) + 1
    twice = sum(1 for r in rows if r[2] != 1)
    reminders, reminder_tasks = res["reminders"]
    startup = [
        float(r[6]["startup_ms"]) for r in res["coder"] if r[6] and "startup_ms" in r[6]
    ]
    whole = [
        float(r[6]["duration_ms"])
        for r in res["coder"]
        if r[6] and "duration_ms" in r[6]
    ]
    coder_run = _seconds(res["coder"], None, 4, 5)
    lines = [
        "# Agent tasks: queue wait and run time through the real stack",
        "",
        f"Machine: {machine()}. Load before {res['load_before']}, after {res['load_after']}.",
        f"Commit: {res['commit']}. Command: `.venv/bin/python bench/agent_tasks.py {' '.join(sys.argv[1:])}`.",
        "",
        f"{args.users} users x {args.per_user} tasks = {total} tasks (half reminders,"
        " half research questions over 5 memories each), submitted at once from one"
        f" thread per user in {res['submit_seconds']:.1f} s; all finished"
        f" {res['all_seconds']:.1f} s after the first submit. The agents worker runs"
        " AGENT_CONCURRENCY=3 processes (the Procfile default); each user may have 3"
        " running.",
        "",
        "## Lost or run twice",
        "",
        f"- tasks seen in PostgreSQL: {len(rows)} of {total}; by status: {statuses}",
        f"- executions other than exactly one per task: {twice}",
        f"- reminders kept: {reminders} for {reminder_tasks} distinct tasks"
        f" (reminder tasks submitted: {(args.per_user + 1) // 2 * args.users})",
        "",
        "## Seconds (p50 / p95 / max)",
        "",
        "| what | n | p50 | p95 | max |",
        "|---|---|---|---|---|",
        _line("queue wait, all", _seconds(rows, None, 3, 4)),
        _line("queue wait, reminder", _seconds(rows, "reminder", 3, 4)),
        _line("queue wait, researcher", _seconds(rows, "researcher", 3, 4)),
        _line("run time, reminder", _seconds(rows, "reminder", 4, 5)),
        _line("run time, researcher", _seconds(rows, "researcher", 4, 5)),
        "",
        f"## Sandbox start-up ({len(startup)} coder runs of `print(1)`, one after another"
        " per user)",
        "",
        "| what | n | p50 | p95 | max |",
        "|---|---|---|---|---|",
        _line("start-up until the first line ran, ms", startup),
        _line("whole sandbox run, ms", whole),
        _line("whole task run (policy + sandbox), s", coder_run),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
