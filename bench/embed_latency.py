"""How long after the 201 a new memory becomes semantically searchable.

Against a running `make run` (web + Celery worker): POST a memory, then poll
GET /v1/memory/{id} until `embedding_ref` is set. Light load: one write at a
time, a pause between writes.

    .venv/bin/python bench/embed_latency.py [--samples 30]
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from pathlib import Path

from memory_api import Client, pct, realistic_text


def signed_up(base: str, prefix: str) -> Client:
    """A client logged in as a fresh user."""
    c = Client(base)
    status, body, _ = c.call(
        "POST",
        "/v1/signup",
        {
            "email": f"{prefix}-{uuid.uuid4().hex[:8]}@example.com",
            "password": f"Lat-{uuid.uuid4().hex}",
        },
    )
    assert status == 201, body
    c.token = body["token"]
    return c


def latency_ms(c: Client, samples: int, warm_up: bool = True) -> list[float]:
    """Per write, ms from its 201 until GET shows embedding_ref (inf past 30 s)."""
    rng = random.Random(5)
    if warm_up:
        # The first write pays the worker's one-time model load; warm it up first.
        c.call(
            "POST",
            "/v1/memory",
            {"type": "long-term", "content": "warm up the embedding model"},
        )
        time.sleep(15)
    lat = []
    for _ in range(samples):
        status, item, _ = c.call(
            "POST", "/v1/memory", {"type": "long-term", "content": realistic_text(rng)}
        )
        t0 = time.perf_counter()
        assert status == 201, item
        while True:
            _, got, _ = c.call("GET", f"/v1/memory/{item['id']}")
            if got.get("embedding_ref"):
                lat.append((time.perf_counter() - t0) * 1000)
                break
            if time.perf_counter() - t0 > 30:
                lat.append(float("inf"))
                break
            time.sleep(0.02)
        time.sleep(0.5)
    return lat


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="http://127.0.0.1:8000")
    ap.add_argument("--samples", type=int, default=30)
    ap.add_argument("--name", default="embed_latency")
    args = ap.parse_args()
    lat = latency_ms(signed_up(args.base, "lat"), args.samples)
    ok = [x for x in lat if x != float("inf")]
    lines = [
        "# Time from 201 to semantically searchable",
        "",
        f"- when: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; against `make run` at {args.base}",
        f"- command: `.venv/bin/python bench/embed_latency.py --samples {args.samples}`",
        "- one write at a time, 0.5 s apart; polled every 20 ms until embedding_ref is set",
        "",
        "| samples | timed out (>30 s) | p50 ms | p95 ms | max ms |",
        "|---:|---:|---:|---:|---:|",
        f"| {len(lat)} | {len(lat) - len(ok)} | {pct(ok, 50):.0f} | {pct(ok, 95):.0f} | {max(ok):.0f} |",
        "",
        "Target (issue #4): within 1 s of the 201 under light load.",
        "",
    ]
    out = Path(__file__).parent / "reports" / f"{args.name}.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
