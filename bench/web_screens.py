"""Server time of the web UI's screens and main htmx fragments, one user with
10,000 memories (issue 13's benchmark).

Data: one user, --items memories loaded with COPY (text = LongMemEval memories
cut to log-normal word counts; vectors = real MiniLM embeddings of a pool of
such texts + small noise, re-normalised, as bench/retrieval_speed.py does);
10% short-term, 70% long-term, 20% permanent; 2% sensitive; 0-2 tags each.
On top, through the services: one memory written and edited (so its detail
has a version history and audit events) and one chat exchange with the
configured runner (so the chat screen lists a conversation).

Measured: sequential GETs with the user's session cookie against a real
gunicorn (2 workers x 4 threads, `make run`'s config) on the embedded
PostgreSQL 18 + Valkey; the time is the client's wall time over loopback on
the same machine (server time plus well under a millisecond). URLs are
interleaved round-robin so background noise spreads over all of them; each
is warmed up first. Find-by-meaning cycles through LongMemEval questions with the
query-embedding cache emptied each round (every query is embedded: cold).

    .venv/bin/python -m kimberly.runtime exec -- .venv/bin/python bench/web_screens.py [--items 10000] [--rounds 60] [--reuse]
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import os
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import numpy as np
from _setup import (
    ROOT,
    copy_rows,
    django_for_bench,
    log,
    longmemeval,
    machine,
    pct,
    start_gunicorn,
)

DB = "kimberly_bench_web"
EMAIL = "web-screens@bench.local"
PORT = 8766
TARGET_MS = 100.0
TAGS = ["work", "family", "health", "travel", "project-x", "food", "money", "ideas"]
ITEM_COLS = (
    "id, user_id, tier, content, size_bytes, tags, source, channels, sensitive, scope, "
    "user_feedback, version, score, embedding_ref, status, protected, created_at, "
    "updated_at, access_count, created_by, consent, sentiment"
)


def load(n_items: int, pool_size: int) -> None:
    """The user and its memories (COPY with FORCE row-level security lifted)."""
    from django.db import connection
    from pgvector.psycopg import register_vector

    from memory import embeddings
    from users.models import User

    rng = random.Random(13)
    nrng = np.random.default_rng(13)
    texts, _ = longmemeval()
    pool = [
        " ".join(t.split()[: max(5, min(400, int(rng.lognormvariate(3.4, 0.8))))])
        for t in rng.sample(texts, pool_size)
    ]
    t = time.perf_counter()
    vectors = embeddings.embed_texts(pool)
    log(f"embedded a pool of {pool_size} texts in {time.perf_counter() - t:.0f}s")
    User.objects.filter(email=EMAIL).delete()
    user = User.objects.create(email=EMAIL, password="!")
    now = datetime.now(UTC)
    tag = embeddings.model_tag()
    picks = nrng.integers(0, pool_size, n_items)
    vecs = vectors[picks] + nrng.normal(0, 0.04, (n_items, vectors.shape[1])).astype(
        np.float32
    )
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    items: list[tuple] = []
    embs: list[tuple] = []
    for k in range(n_items):
        iid = uuid.uuid4()
        text = pool[picks[k]]
        tier = (
            "short-term"
            if k % 10 == 0
            else ("long-term" if k % 10 < 8 else "permanent")
        )
        created = now - timedelta(seconds=int(nrng.integers(0, 86400 * 365)))
        items.append(
            (iid, user.pk, tier, text, len(text.encode()) + 120,
             rng.sample(TAGS, rng.randint(0, 2)), "import", [], k % 50 == 0,
             "private", "", 1, rng.random() * 0.6, f"emb_{iid.hex}", "active",
             k % 100 == 0, created, created, 0, "system", True, 0.0)
        )  # fmt: skip
        embs.append((iid, user.pk, vecs[k], tag, "", now))
    connection.ensure_connection()
    raw = connection.connection
    register_vector(raw)
    loaded = ("memory_memoryitem", "memory_memoryembedding")
    # COPY FROM refuses a table under row-level security: the owner loads with
    # FORCE lifted (the owner bypasses its policies then), and puts it back.
    with connection.cursor() as cur:
        for table in loaded:
            cur.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
    try:
        with raw.cursor() as cur:
            copy_rows(cur, f"COPY memory_memoryitem ({ITEM_COLS}) FROM STDIN", items)
            copy_rows(
                cur,
                "COPY memory_memoryembedding (item_id, user_id, vector, model,"
                " content_hash, created_at) FROM STDIN WITH (FORMAT BINARY)",
                embs,
                ["uuid", "uuid", "vector", "varchar", "varchar", "timestamptz"],
            )
        raw.commit()
    finally:
        with connection.cursor() as cur:
            for table in loaded:
                cur.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO memory_quota (user_id, tier, used_bytes) SELECT user_id, tier,"
            " sum(size_bytes) FROM memory_memoryitem WHERE user_id = %s"
            " AND status = 'active' GROUP BY 1, 2 ON CONFLICT (user_id, tier)"
            " DO UPDATE SET used_bytes = EXCLUDED.used_bytes",
            [user.pk],
        )
        cur.execute("VACUUM ANALYZE memory_memoryitem")
        cur.execute("VACUUM ANALYZE memory_memoryembedding")
    log(f"loaded {n_items} memories")


def through_services(user) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """A memory with history and a chat exchange, as the user (the services)."""
    from chat.services import chat_reply
    from kimberly import rls
    from kimberly.context import Actor, Context
    from memory.services import memory_create, memory_update

    ctx = Context(actor=Actor("user", str(user.pk)))
    out: dict[str, str] = {}
    with rls.acting_user(user.pk):
        made = memory_create(
            ctx=ctx,
            user=user,
            tier="long-term",
            content="My sister's birthday is on the 14th of March; she likes tulips.",
            metadata={"tags": ["family"]},
        )
        item = made.item
        memory_update(
            ctx=ctx,
            user=user,
            memory_id=item.public_id,
            content="My sister's birthday is on the 14th of March; she loves tulips.",
        )
        out["detail"] = item.public_id
        try:
            reply = chat_reply(
                ctx=ctx, user=user, message="When is my sister's birthday?"
            )
            out["conversation"] = reply.exchange.conversation.public_id
        except Exception as exc:  # the chat URL is measured without it then
            log(f"no chat exchange ({type(exc).__name__}: {exc})")
    return out


def session_cookie() -> str:
    from django.conf import settings
    from django.test import Client

    from kimberly import rls
    from users.models import User

    client = Client()
    with rls.maintenance("bench: sign the bench user in"):
        client.force_login(User.objects.get(email=EMAIL))
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def urls(ids: dict[str, str], some_id: str) -> list[tuple[str, str, bool]]:
    """(label, path, htmx fragment?); `{q}` is replaced by a question."""
    out = [
        ("dashboard", "/", False),
        ("memory", "/memory", False),
        ("memory, tier filter", "/memory?tier=long-term", False),
        ("list fragment, tier filter", "/memory/list?tier=long-term", True),
        ("list fragment, tag filter", "/memory/list?tags=work", True),
        ("list fragment, page 3", "/memory/list?tier=long-term&page=3", True),
        ("list fragment, find by meaning (q=)", "/memory/list?q={q}", True),
        ("memory, find by meaning (q=)", "/memory?q={q}", False),
        ("detail (COPY-loaded memory)", f"/memory/{some_id}", True),
        ("detail (edited memory, history)", f"/memory/{ids['detail']}", True),
        ("imports fragment", "/memory/imports", True),
        ("forecast fragment (on demand: a dry run)", "/memory/forecast", True),
        ("chat", "/chat", False),
        ("agents", "/agents", False),
        ("insights", "/insights", False),
        ("settings", "/settings", False),
        ("chat proposals fragment", "/chat/proposals", True),
        ("settings exports fragment", "/settings/exports", True),
    ]
    if "conversation" in ids:
        out.insert(13, ("chat conversation", f"/chat/{ids['conversation']}", False))
    return out


def get(conn: http.client.HTTPConnection, path: str, cookie: str, htmx: bool):  # type: ignore[no-untyped-def]
    headers = {"Cookie": cookie, "Host": "127.0.0.1"}
    if htmx:
        headers["HX-Request"] = "true"
    t = time.perf_counter()
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    ms = (time.perf_counter() - t) * 1000
    if not htmx and resp.status == 200 and b"logout" not in body:
        raise SystemExit(f"{path}: not signed in (no sign-out link on the page)")
    return resp.status, ms, len(body)


def measure(targets, cookie: str, rounds: int, questions: list[str]):  # type: ignore[no-untyped-def]
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
    from django_redis import get_redis_connection

    redis = get_redis_connection("default")
    qs = itertools.cycle(questions)
    times: dict[str, list[float]] = {label: [] for label, _, _ in targets}
    sizes: dict[str, int] = {}
    for r in range(rounds + 3):  # 3 warm-up rounds (each worker, thread, cache)
        for key in redis.scan_iter("kb:qemb:*"):  # every query embedded (cold)
            redis.delete(key)
        for label, path, htmx in targets:
            p = path.replace("{q}", urlencode({"": next(qs)})[1:])
            status, ms, size = get(conn, p, cookie, htmx)
            if status not in (200, 286):
                raise SystemExit(f"{label} {p}: HTTP {status}")
            if r >= 3:
                times[label].append(ms)
                sizes[label] = size
        if r % 10 == 0:
            log(f"round {r}/{rounds + 3}")
    return times, sizes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--pool", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--reuse", action="store_true")
    args = ap.parse_args()
    django_for_bench(DB)
    from kimberly import rls
    from memory.models import MemoryItem
    from users.models import User

    with rls.maintenance("bench: load the bench user's memories"):
        user = User.objects.filter(email=EMAIL).first()
        fresh = not (
            args.reuse
            and user
            and MemoryItem.objects.filter(user=user).count() >= args.items
        )
        if fresh:
            load(args.items, args.pool)
        user = User.objects.get(email=EMAIL)
    ids = through_services(user)
    with rls.maintenance("bench: pick a loaded memory"):
        user = User.objects.get(email=EMAIL)
        some_id = "mem_" + str(
            MemoryItem.objects.filter(user=user, source="import", sensitive=False)
            .order_by("created_at")
            .values_list("pk", flat=True)[args.items // 2]
        )
        count = MemoryItem.objects.filter(user=user).count()
    cookie = session_cookie()
    _, questions = longmemeval()
    random.Random(5).shuffle(questions)
    targets = urls(ids, some_id)
    server = start_gunicorn(PORT)
    try:
        time.sleep(20)  # workers load the embedding model in post_worker_init
        load_before = os.getloadavg()[0]
        times, sizes = measure(targets, cookie, args.rounds, questions)
        loads = (load_before, os.getloadavg()[0])
    finally:
        server.terminate()
        server.wait(30)
    write_report(args, targets, times, sizes, count, loads)


def write_report(args, targets, times, sizes, count, loads) -> None:  # type: ignore[no-untyped-def]
    from django.conf import settings

    hits = settings.WEB_MEMORY_SEARCH_HITS
    lines = [
        f"# Web UI screens: server time at {count:,} memories for one user",
        "",
        f"- when: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: {machine()}",
        "- command: `.venv/bin/python -m kimberly.runtime exec -- .venv/bin/python "
        f"bench/web_screens.py --items {args.items} --rounds {args.rounds}`",
        "- server: gunicorn (2 workers x 4 threads) on the same 2 cores as PostgreSQL 18 + "
        "pgvector, Valkey and the client; signed in with a session cookie; 1-minute load "
        f"average {loads[0]:.1f} before and {loads[1]:.1f} after the measurement (other "
        "sessions' test runs share the machine)",
        f"- {args.rounds} timed GETs per URL after 3 warm-up rounds, one at a time, URLs "
        "interleaved; wall time over loopback (server time + < 1 ms)",
        "- find by meaning: LongMemEval questions in turn, the query-embedding cache "
        "emptied every round (each query embedded in the request), top "
        f"{hits} hybrid hits (WEB_MEMORY_SEARCH_HITS)",
        "",
        f"| URL | what | n | p50 ms | p95 ms | max ms | KiB | p95 ≤ {TARGET_MS:.0f} ms |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    missed = []
    for label, path, htmx in targets:
        v = times[label]
        p95 = pct(v, 95)
        ok = p95 <= TARGET_MS
        if not ok:
            missed.append(label)
        shown = path.replace("{q}", "…")
        if len(shown) > 40:
            shown = shown[:22] + "…" + shown[-8:]
        kind = "fragment" if htmx else "page"
        lines.append(
            f"| `{shown}` | {label} ({kind}) | {len(v)} | {pct(v, 50):.1f} | {p95:.1f} "
            f"| {max(v):.1f} | {sizes[label] / 1024:.0f} | {'yes' if ok else '**no**'} |"
        )
    lines += [
        "",
        f"Target (issue 13): p95 ≤ {TARGET_MS:.0f} ms. "
        + (f"Missed by: {', '.join(missed)}." if missed else "Every URL meets it."),
        "",
    ]
    out = ROOT / "bench" / "reports" / "web_screens.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
