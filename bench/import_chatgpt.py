"""Import of a ChatGPT export through the real stack: until stored, until searchable.

Starts the Procfile's processes with honcho, as `make run` does (gunicorn, a
Celery worker of concurrency 2, beat), on a fresh database of the embedded
servers (Redis dbs 2 and 3), like bench/embed_import.py. Then:

1. warm-up: one memory written and waited for until it has its vector, so the
   worker's model load is not counted below;
2. the import: a generated conversations.json (memory/tests/chatgpt_export.py)
   with --messages user messages, uploaded to POST /v1/memory/import (over
   IMPORT_SYNC_MAX_RECORDS, so the async path: 202, then the Celery job);
   GET /v1/memory/imports/{id} and the vector count are sampled every 0.25 s:
   time until the job has stored them all, and until every one has its vector
   (searchable by meaning), then a query that must find one of them;
3. a synchronous import of IMPORT_SYNC_MAX_RECORDS messages (one request).

    .venv/bin/python bench/import_chatgpt.py                 # 5,000 messages
    .venv/bin/python bench/import_chatgpt.py --messages 20000 --name import_chatgpt_20k

Numbers depend on the machine being otherwise idle; the report records the load.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests
from _setup import ROOT, machine
from embed_import import (
    _commit,
    _free_port,
    _fresh_database,
    _load,
    _servers,
    stack_env,
    start_stack,
)
from embed_latency import signed_up
from memory_api import Client, realistic_text

from memory.tests.chatgpt_export import chatgpt_export

SYNC_RECORDS = 500  # IMPORT_SYNC_MAX_RECORDS' default


@dataclass
class Run:
    posted: float = 0.0
    accepted: float = 0.0  # the 202
    stored: float | None = None  # the job succeeded
    searchable: float | None = None  # every imported memory has its vector
    status: dict[str, Any] = field(default_factory=dict)
    progress: list[tuple[float, int, int]] = field(default_factory=list)


def _vectors(db_url: str, user_email: str) -> int:
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            """SELECT count(*) FROM memory_memoryembedding e
                 JOIN users_user u ON u.id = e.user_id WHERE u.email = %s""",
            [user_email],
        ).fetchone()
    return int(row[0]) if row else 0


def _email(c: Client) -> str:
    return str(c.call("GET", "/v1/user")[1]["email"])


def _upload(base: str, token: str, body: bytes) -> tuple[int, dict[str, Any], float]:
    started = time.perf_counter()
    resp = requests.post(
        f"{base}/v1/memory/import",
        headers={"Authorization": f"Bearer {token}"},
        files={"file": ("conversations.json", body, "application/json")},
        data={"format": "chatgpt"},
        timeout=120,
    )
    return resp.status_code, resp.json(), time.perf_counter() - started


def warm_up(c: Client, db_url: str) -> float:
    started = time.perf_counter()
    status, _, _ = c.call(
        "POST", "/v1/memory", {"type": "long-term", "content": "warm"}
    )
    assert status == 201
    while _vectors(db_url, _email(c)) < 1:
        assert time.perf_counter() - started < 300, "the worker never embedded"
        time.sleep(0.2)
    return time.perf_counter() - started


def run_async(c: Client, base: str, db_url: str, body: bytes, n: int) -> Run:
    run = Run()
    email = _email(c)
    run.posted = time.perf_counter()
    status, imp, _ = _upload(base, c.token, body)
    run.accepted = time.perf_counter()
    assert status == 202, (status, imp)
    while run.searchable is None:
        now = time.perf_counter()
        if run.stored is None:
            _, run.status, _ = c.call("GET", f"/v1/memory/imports/{imp['id']}")
            run.progress.append((now, run.status.get("processed", 0), 0))
            if run.status.get("status") in ("succeeded", "failed"):
                run.stored = now
        vectors = _vectors(db_url, email) - 1  # the warm-up memory
        if run.stored is not None and vectors >= run.status.get("imported", n):
            run.searchable = now
        if now - run.posted > 1800:
            break  # reported as not finished
        time.sleep(0.25)
    return run


def report(args: argparse.Namespace, res: dict[str, Any]) -> str:
    run: Run = res["run"]
    n = args.messages
    stored = (run.stored or float("inf")) - run.posted
    searchable = (run.searchable or float("inf")) - run.posted
    after = (run.searchable or float("inf")) - (run.stored or float("inf"))
    st = run.status
    return "\n".join(
        [
            "# Import of a ChatGPT export: until stored, until searchable by meaning",
            "",
            f"- when: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: {machine()}",
            f"- load average before / after: {res['load_before']} / {res['load_after']}"
            " (other work on the machine slows every number here)",
            f"- command: `.venv/bin/python bench/import_chatgpt.py {' '.join(res['argv'])}`",
            f"- code: {res['commit']}; the Procfile's web, worker (concurrency 2) and beat"
            " via honcho, as `make run`; default settings (IMPORT_BATCH_SIZE 250,"
            " EMBEDDING_BATCH_SIZE 128); files in the embedded S3 (SeaweedFS) unless AWS_* name a bucket",
            f"- file: a generated conversations.json of {res['conversations']} conversations,"
            f" {n} user messages (avg {res['avg_words']:.0f} words) among"
            f" {res['nodes']} nodes (replies, system and tool messages, custom"
            f" instructions, edited prompts), {res['file_mb']:.1f} MB; tier long-term",
            f"- warm-up (first write until its vector, the worker loading the model):"
            f" {res['warm_up']:.1f} s, not counted below",
            "",
            "| measure | value |",
            "|---|---:|",
            f"| upload until 202 (parse and check every record, store the file) |"
            f" {run.accepted - run.posted:.2f} s |",
            f"| upload until all stored (job succeeded) | {stored:.1f} s"
            f" ({n / stored:.0f} memories/s) |",
            f"| upload until all searchable by meaning (every one has its vector) |"
            f" {searchable:.1f} s ({n / searchable:.0f} memories/s) |",
            f"| stored until searchable | {after:.1f} s |",
            f"| job result: imported / skipped_duplicate / refused | {st.get('imported')}"
            f" / {st.get('skipped_duplicate')} / {st.get('refused')} |",
            f"| skipped (not memories) | {st.get('skipped')} |",
            f"| query for one imported message's text finds it (POST /v1/memory/query) | {res['query_ok']} |",
            f"| re-upload of the same file: 202 until done, all duplicates |"
            f" {res['reimport_s']:.1f} s, {res['reimport']} |",
            f"| synchronous import of {SYNC_RECORDS} messages (one request, 201) |"
            f" {res['sync_s']:.2f} s |",
            "",
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--name", default="import_chatgpt")
    args = ap.parse_args()
    rng = random.Random(5)
    texts = [realistic_text(rng) for _ in range(args.messages)]
    export, wanted = chatgpt_export(user_messages=args.messages, texts=list(texts))
    body = json.dumps(export).encode()
    server, redis_url = _servers()
    db_url = _fresh_database(server)
    port = _free_port()
    env = stack_env(ROOT, db_url, redis_url, port)
    res: dict[str, Any] = {"argv": sys.argv[1:], "load_before": _load()}
    res["commit"] = _commit(ROOT)
    res["conversations"] = len(export)
    res["nodes"] = sum(len(c["mapping"]) for c in export)
    res["file_mb"] = len(body) / 1e6
    res["avg_words"] = sum(len(t.split()) for _, t, _ in wanted) / len(wanted)
    stack = start_stack(ROOT, env, port)
    try:
        c = signed_up(stack.base, "import")
        res["warm_up"] = warm_up(c, db_url)
        res["run"] = run_async(c, stack.base, db_url, body, args.messages)
        status, hits, _ = c.call(
            "POST", "/v1/memory/query", {"query": texts[0], "top_k": 5}
        )
        res["query_ok"] = status == 200 and any(
            h["item"]["content"] == texts[0] for h in hits.get("results", [])
        )
        started = time.perf_counter()
        status, again, _ = _upload(stack.base, c.token, body)
        while again.get("status") not in ("succeeded", "failed"):
            time.sleep(0.25)
            again = c.call("GET", f"/v1/memory/imports/{again['id']}")[1]
        res["reimport_s"] = time.perf_counter() - started
        res["reimport"] = (
            f"{again['skipped_duplicate']} duplicates, {again['imported']} new"
        )
        small, _ = chatgpt_export(
            user_messages=SYNC_RECORDS, seed=uuid.uuid4().int % 1000
        )
        other = signed_up(stack.base, "sync")
        status, out, secs = _upload(stack.base, other.token, json.dumps(small).encode())
        assert status == 201, (status, out)
        res["sync_s"] = secs
        res["load_after"] = _load()
    finally:
        stack.stop()
    text = report(args, res)
    out_path = ROOT / "bench" / "reports" / f"{args.name}.md"
    out_path.write_text(text)
    print(text)
    print(f"wrote {out_path}; stack log {stack.log}")


if __name__ == "__main__":
    main()
