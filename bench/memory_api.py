"""Load benchmark for POST /v1/memory and GET /v1/memory against a running server.

    make run                                   # in one terminal
    .venv/bin/python bench/memory_api.py --name memory_api   # in another

Each of N client threads owns a fresh user and a keep-alive HTTP connection and
loops for --seconds per phase: phase "write" (POST /v1/memory, realistic text
lengths, tiers mixed), then phase "read" (GET /v1/memory?per_page=20, with
filters mixed). Latency is measured client-side per request. The report goes
to bench/reports/<name>.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import statistics
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

WORDS = (  # noqa: SIM905
    "the a to and of my I for project meeting tomorrow prefers coffee tea "
    "deadline report kimberly memory remember call mom dentist berlin flight "
    "python database review budget garden running book sister birthday"
).split()


def realistic_text(rng: random.Random) -> str:
    # Log-normal-ish lengths: most notes are a sentence, some are paragraphs.
    n = max(3, min(400, int(rng.lognormvariate(3.0, 0.8))))
    return " ".join(rng.choice(WORDS) for _ in range(n))


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def add(self, ms: float, status: int | str) -> None:
        if status in (200, 201):
            self.latencies.append(ms)
        else:
            self.errors[str(status)] = self.errors.get(str(status), 0) + 1


class Client:
    def __init__(self, base: str) -> None:
        u = urlparse(base)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        self.token = ""

    def call(
        self, method: str, path: str, body: dict | None = None
    ) -> tuple[int, dict, float]:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        started = time.perf_counter()
        try:
            self.conn.request(method, path, body=data, headers=headers)
            resp = self.conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            return -1, {}, (time.perf_counter() - started) * 1000
        ms = (time.perf_counter() - started) * 1000
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            payload = {}
        return resp.status, payload, ms


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(p / 100 * (len(values) - 1))))
    return values[k]


def run_phase(clients: list[Client], seconds: float, kind: str) -> tuple[Stats, float]:
    stats = Stats()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    barrier = threading.Barrier(len(clients) + 1)

    def loop(i: int, client: Client) -> None:
        rng = random.Random(i)
        local = Stats()
        barrier.wait()
        while time.monotonic() < deadline:
            if kind == "write":
                tier = rng.choices(["short-term", "long-term", "permanent"], [5, 4, 1])[
                    0
                ]
                body = {
                    "type": tier,
                    "content": realistic_text(rng),
                    "metadata": {
                        "tags": rng.sample(WORDS, rng.randint(0, 3)),
                        "source": "api",
                    },
                }
                status, _, ms = client.call("POST", "/v1/memory", body)
            else:
                query = rng.choice(
                    [
                        "",
                        "&type=long-term",
                        "&tags=project,coffee",
                        "&q=meeting",
                        "&ordering=-updated_at",
                    ]
                )
                status, _, ms = client.call("GET", f"/v1/memory?per_page=20{query}")
            local.add(ms, status)
        with lock:
            stats.latencies.extend(local.latencies)
            for k, v in local.errors.items():
                stats.errors[k] = stats.errors.get(k, 0) + v

    threads = [
        threading.Thread(target=loop, args=(i, c)) for i, c in enumerate(clients)
    ]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.monotonic()
    for t in threads:
        t.join()
    return stats, time.monotonic() - started


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="http://127.0.0.1:8000")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--name", default="memory_api")
    args = ap.parse_args()

    clients = [Client(args.base) for _ in range(args.clients)]
    run_id = uuid.uuid4().hex[:8]
    for i, c in enumerate(clients):
        status, body, _ = c.call(
            "POST",
            "/v1/signup",
            {
                "email": f"bench-{run_id}-{i}@example.com",
                "password": f"Load-{uuid.uuid4().hex}",
            },
        )
        if status != 201:
            raise SystemExit(f"signup failed ({status}): {body}")
        c.token = body["token"]

    rows = []
    for kind, label in (("write", "POST /v1/memory"), ("read", "GET /v1/memory")):
        stats, elapsed = run_phase(clients, args.seconds, kind)
        ok = len(stats.latencies)
        rows.append(
            {
                "endpoint": label,
                "requests_ok": ok,
                "errors": stats.errors,
                "throughput_rps": ok / elapsed,
                "p50_ms": pct(stats.latencies, 50),
                "p95_ms": pct(stats.latencies, 95),
                "p99_ms": pct(stats.latencies, 99),
                "mean_ms": statistics.fmean(stats.latencies) if ok else float("nan"),
                "seconds": elapsed,
            }
        )
        print(json.dumps(rows[-1]))

    out = Path(__file__).parent / "reports" / f"{args.name}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# Memory API load benchmark ({args.name})",
        "",
        f"- when: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        f"- server: `make run` defaults at {args.base} (gunicorn gthread, embedded PostgreSQL 18 + Valkey on the same machine)",
        f"- load: {args.clients} concurrent keep-alive clients (threads in one process on the same machine), {args.seconds:.0f} s per phase, one user per client",
        f"- command: `.venv/bin/python bench/memory_api.py --clients {args.clients} --seconds {args.seconds:.0f} --name {args.name}`",
        "",
        "| endpoint | ok requests | errors | throughput (req/s) | p50 ms | p95 ms | p99 ms | mean ms |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['endpoint']} | {r['requests_ok']} | {r['errors'] or 0} | {r['throughput_rps']:.0f} "
            f"| {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['mean_ms']:.1f} |"
        )
    lines += [
        "",
        "Target (issue #3): POST /v1/memory p95 <= 15 ms and >= 400 writes/s on this 2-core machine.",
        "",
    ]
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
