"""Chat context assembly with 10,000 memories stored for one user (model call excluded).

What is timed is `chat.context.assemble`: everything POST /v1/chat does before
the model is called: hybrid retrieval over the message (and over the previous
user turn when there is one: a second retrieval), the latest session entries
from Redis, de-duplication, and the token budget. The query embedding is
included; each question is asked once cold (no cached query vector) and once
warm.

Data: 10,000 real texts (LongMemEval memories) embedded with the real model, so
neighbours are real; 10% short-term (the session), the rest long-term; 2% are
sensitive (never chosen). Questions are LongMemEval's.

    .venv/bin/python bench/chat_context.py [--items 10000] [--questions 300] [--reuse]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

from _setup import ROOT, copy_rows, django_for_bench, log, longmemeval, machine, pct

DB = "kimberly_bench_chat"
EMAIL = "chat-context@bench.local"


def load(n_items: int) -> None:
    from django.db import connection
    from pgvector.psycopg import register_vector

    from memory import embeddings
    from users.models import User

    rng = random.Random(11)
    texts, _ = longmemeval()
    texts = list(dict.fromkeys(texts))
    texts = [" ".join(t.split()[:300]) for t in texts]
    picked = [texts[i % len(texts)] for i in range(n_items)]
    User.objects.filter(email=EMAIL).delete()
    user = User.objects.create(email=EMAIL, password="!")
    t = time.perf_counter()
    vectors = embeddings.embed_texts(picked)
    log(f"embedded {n_items} texts in {time.perf_counter() - t:.0f}s")
    now = datetime.now(UTC)
    tag = embeddings.model_tag()
    cols = (
        "id, user_id, tier, content, size_bytes, tags, source, channels, sensitive,"
        " scope, user_feedback, version, score, embedding_ref, status, protected,"
        " created_at, updated_at, access_count, created_by, consent, sentiment"
    )
    items, embs = [], []
    for k, text in enumerate(picked):
        iid = uuid.uuid4()
        tier = "short-term" if k % 10 == 0 else "long-term"
        created = now - timedelta(
            seconds=rng.randint(0, 86400 * (1 if k % 10 == 0 else 365))
        )
        items.append(
            (
                iid,
                user.pk,
                tier,
                text,
                len(text.encode()) + 120,
                [],
                "import",
                [],
                k % 50 == 1,
                "private",
                "",
                1,
                rng.random() * 0.6,
                f"emb_{iid.hex}",
                "active",
                False,
                created,
                created,
                0,
                "system",
                True,
                0.0,
            )
        )
        embs.append((iid, user.pk, vectors[k], tag, "", now))
    connection.ensure_connection()
    raw = connection.connection
    register_vector(raw)
    with raw.cursor() as cur:
        copy_rows(cur, f"COPY memory_memoryitem ({cols}) FROM STDIN", items)
        copy_rows(
            cur,
            "COPY memory_memoryembedding (item_id, user_id, vector, model, content_hash,"
            " created_at) FROM STDIN WITH (FORMAT BINARY)",
            embs,
            ["uuid", "uuid", "vector", "varchar", "varchar", "timestamptz"],
        )
        cur.execute(
            "INSERT INTO memory_quota (user_id, tier, used_bytes) SELECT user_id, tier,"
            " sum(size_bytes) FROM memory_memoryitem WHERE user_id = %s GROUP BY 1, 2"
            " ON CONFLICT (user_id, tier) DO UPDATE SET used_bytes = EXCLUDED.used_bytes",
            [user.pk],
        )
    raw.commit()
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE memory_memoryitem")
        cur.execute("VACUUM ANALYZE memory_memoryembedding")


def measure(questions: list[str]) -> dict[str, list[float]]:
    from django_redis import get_redis_connection

    from chat.context import assemble
    from chat.runners import Turn
    from users.models import User

    user = User.objects.get(email=EMAIL)
    assemble(user=user, message="warm up the model and the connections", history=[])
    conn = get_redis_connection("default")
    for key in conn.scan_iter("kb:qemb:*", count=1000):  # no cached query vectors
        conn.delete(key)
    runs: dict[str, list[float]] = {
        "cold, no history": [],
        "cold, 2 turns": [],
        "warm": [],
        "chosen": [],
    }
    for i, q in enumerate(questions):
        history = []
        if i % 2:
            prev = questions[i - 1]
            history = [Turn("user", prev), Turn("assistant", "I noted that.")]
        t = time.perf_counter()
        got = assemble(user=user, message=q, history=history)
        runs["cold, 2 turns" if history else "cold, no history"].append(
            (time.perf_counter() - t) * 1000
        )
        runs["chosen"].append(len(got.used))
        t = time.perf_counter()
        assemble(user=user, message=q, history=history)
        runs["warm"].append((time.perf_counter() - t) * 1000)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--reuse", action="store_true")
    args = parser.parse_args()
    django_for_bench(DB)
    from django.conf import settings

    from users.models import User

    if not (args.reuse and User.objects.filter(email=EMAIL).exists()):
        load(args.items)
    _, questions = longmemeval()
    questions = questions[: args.questions]
    runs = measure(questions)
    chosen = runs.pop("chosen")
    lines = [
        "# Chat context assembly (model call excluded)",
        "",
        f"Machine: {machine()}. Command: `.venv/bin/python bench/chat_context.py"
        f" --items {args.items} --questions {args.questions}`.",
        f"One user with {args.items:,} memories (real MiniLM vectors), {len(questions)}"
        f" LongMemEval questions; CHAT_CONTEXT_MEMORIES={settings.CHAT_CONTEXT_MEMORIES},"
        f" budget {settings.LLM_CONTEXT_TOKENS - settings.LLM_REPLY_TOKENS} tokens."
        f" Memories chosen per message: mean {statistics.mean(chosen):.1f}.",
        "",
        "| case | n | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|",
    ]
    for name, values in runs.items():
        lines.append(
            f"| {name} | {len(values)} | {pct(values, 50):.1f} | {pct(values, 95):.1f}"
            f" | {pct(values, 99):.1f} | {max(values):.1f} |"
        )
    lines += [
        "",
        "Target (issue 10): p95 ≤ 30 ms excluding the model call.",
        "Cold: the query embedding is computed (no cached vector);"
        " warm: the same message again (query vectors cached in Redis).",
    ]
    out = ROOT / "bench" / "reports" / "chat_context.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
