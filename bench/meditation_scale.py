"""Meditation at scale: the nightly run over 1,000,000 memories of 10,000 users,
end to end through real Celery workers, timed.

A template database is loaded once (COPY, about 100 memories per user: tiers,
ages, archives past the grace window, feedback, protected items, retrieval
history, goals with vectors, a share of users over their long-term quota).
Every pass starts from a fresh copy of it, starts `celery worker -c N`, queues
the nightly scope-all run (memory.meditation.meditation_queue_all, the beat
task's code) and waits for it to finish. "first night" re-scores everything
(all stored scores start at 0.5, so every row is rewritten); "next night" is
the following night on the same data (as_of + 1 day), the steady state.

    .venv/bin/python bench/meditation_scale.py [--users 10000] [--per-user 100]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from _setup import ROOT, copy_rows, django_for_bench, machine
from retrieval_speed import log, texts_and_questions

TEMPLATE = "kimberly_bench_meditation_tpl"
STATE = ROOT / "var" / "bench-meditation-template.txt"


def _switch_db(name: str) -> None:
    from django.conf import settings
    from django.db import connections

    connections.close_all()
    settings.DATABASES["default"]["NAME"] = name
    connections["default"].settings_dict["NAME"] = name
    os.environ["DATABASE_URL"] = (
        os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/" + name
    )


def _admin(sql: str) -> None:
    import psycopg

    url = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)


def fresh_copy(template: str, copy: str) -> None:
    """(Re)create database `copy` from `template` and point Django at it."""
    from django.db import connections

    connections.close_all()
    _switch_db(template)
    connections.close_all()
    _admin(f'DROP DATABASE IF EXISTS "{copy}"')
    _admin(f'CREATE DATABASE "{copy}" TEMPLATE "{template}" STRATEGY FILE_COPY')
    _switch_db(copy)


def drop_copy(template: str, copy: str) -> None:
    """Point Django back at `template` and drop `copy`."""
    from django.db import connections

    connections.close_all()
    _switch_db(template)
    connections.close_all()
    _admin(f'DROP DATABASE IF EXISTS "{copy}"')


def load_template(n_users: int, per_user: int, over_share: float) -> str:
    """Fill the template database; returns a one-line description of the data."""
    from django.db import connection
    from pgvector.psycopg import register_vector

    from memory import embeddings
    from memory.sentiment import sentiment_strength
    from users.models import User

    rng = random.Random(11)
    nrng = np.random.default_rng(11)
    texts, questions = texts_and_questions()
    pool = [
        " ".join(t.split()[: max(5, min(300, int(rng.lognormvariate(3.4, 0.8))))])
        for t in rng.sample(texts, 600)
    ]
    vectors = embeddings.embed_texts(pool)
    sentiments = [sentiment_strength(t) for t in pool]
    goal_texts = rng.sample(questions, 200)
    goal_vectors = embeddings.embed_texts(goal_texts)
    log(f"embedded a pool of {len(pool)} texts and {len(goal_texts)} goals")

    with connection.cursor() as cur:
        cur.execute("TRUNCATE users_user CASCADE")
        for index in ("memory_search_gin", "memory_tags_gin", "memory_embedding_hnsw"):
            cur.execute(f"DROP INDEX IF EXISTS {index}")
    User.objects.bulk_create(
        [User(email=f"med-{i:05d}@bench.local", password="!") for i in range(n_users)],
        batch_size=2000,
    )
    user_ids = list(User.objects.order_by("email").values_list("id", flat=True))
    connection.ensure_connection()
    raw = connection.connection
    register_vector(raw)
    now = datetime.now(UTC)
    tag = embeddings.model_tag()
    tag_pool = ["work", "family", "health", "travel", "project-x", "food", "money"]
    item_cols = (
        "id, user_id, tier, content, size_bytes, tags, source, channels, sensitive, scope, "
        "user_feedback, version, score, embedding_ref, status, protected, created_at, "
        "updated_at, access_count, created_by, consent, sentiment, last_seen_at, archived_at"
    )
    counts = nrng.integers(per_user // 5, per_user * 9 // 5 + 1, n_users)
    t = time.perf_counter()
    total = 0
    with raw.cursor() as cur:
        for u0 in range(0, n_users, 200):
            items, vecs_rows, retrievals, goals = [], [], [], []
            for n, uid in enumerate(user_ids[u0 : u0 + 200], start=u0):
                k_items = int(counts[n])
                picks = nrng.integers(0, len(pool), k_items)
                noise = nrng.normal(0, 0.04, (k_items, vectors.shape[1]))
                vecs = (vectors[picks] + noise).astype(np.float32)
                vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
                if n % 2 == 0:  # half the users have one to three goals
                    for g in rng.sample(range(len(goal_texts)), rng.randint(1, 3)):
                        goals.append(
                            (
                                uid,
                                goal_texts[g],
                                rng.sample(tag_pool, 1),
                                goal_vectors[g],
                                now,
                            )
                        )
                for k in range(k_items):
                    iid = uuid.uuid4()
                    text = pool[picks[k]]
                    r = rng.random()
                    tier = (
                        "short-term"
                        if r < 0.1
                        else "long-term"
                        if r < 0.8
                        else "permanent"
                    )
                    if tier == "short-term":  # half of them past the 24 h lifetime
                        created = now - timedelta(hours=rng.uniform(0, 48))
                    else:
                        created = now - timedelta(days=rng.uniform(1, 365))
                    archived = tier != "short-term" and rng.random() < 0.05
                    archived_at = (
                        now - timedelta(days=rng.uniform(0, 60)) if archived else None
                    )
                    seen = (
                        now - timedelta(days=rng.uniform(0, 30))
                        if rng.random() < 0.3
                        else None
                    )
                    f = rng.random()
                    feedback = (
                        "thumbs_up"
                        if f < 0.03
                        else "thumbs_down"
                        if f < 0.04
                        else f"rating:{rng.randint(1, 5)}"
                        if f < 0.06
                        else ""
                    )
                    items.append(
                        (
                            iid, uid, tier, text, len(text.encode()) + 120,
                            rng.sample(tag_pool, rng.randint(0, 2)), "import", [],
                            k % 50 == 0, "private", feedback, 1, 0.5, f"emb_{iid.hex}",
                            "archived" if archived else "active", rng.random() < 0.02,
                            created, created, int(nrng.poisson(1.5)) if seen else 0,
                            "system", True, sentiments[picks[k]], seen, archived_at,
                        )
                    )  # fmt: skip
                    vecs_rows.append((iid, uid, vecs[k], tag, "", now))
                    if seen:
                        for _ in range(rng.randint(1, 4)):
                            retrievals.append(
                                (uid, iid, "", rng.randint(1, 10), 0.5, seen)
                            )
                total += k_items
            copy_rows(cur, f"COPY memory_memoryitem ({item_cols}) FROM STDIN", items)
            copy_rows(
                cur,
                "COPY memory_memoryembedding (item_id, user_id, vector, model, content_hash, "
                "created_at) FROM STDIN WITH (FORMAT BINARY)",
                vecs_rows,
                ["uuid", "uuid", "vector", "varchar", "varchar", "timestamptz"],
            )
            copy_rows(
                cur,
                "COPY memory_retrievalrecord (user_id, item_id, request_id, rank, final, "
                "created_at) FROM STDIN",
                retrievals,
            )
            copy_rows(
                cur,
                "COPY memory_goal (user_id, text, tags, vector, created_at) FROM STDIN "
                "WITH (FORMAT BINARY)",
                goals,
                ["uuid", "varchar", "varchar[]", "vector", "timestamptz"],
            )
            raw.commit()
            if u0 % 2000 == 0:
                log(
                    f"loaded {u0 + 200}/{n_users} users ({time.perf_counter() - t:.0f}s)"
                )
    n_over = int(n_users * over_share)
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO memory_quota (user_id, tier, used_bytes) SELECT u.id, t.tier, "
            "COALESCE((SELECT sum(size_bytes) FROM memory_memoryitem i WHERE i.user_id = u.id "
            "AND i.tier = t.tier AND i.status = 'active'), 0) FROM users_user u, "
            "(VALUES ('short-term'), ('long-term'), ('permanent')) t(tier)"
        )
        # Over quota: a long-term limit of 70% of what they hold.
        cur.execute(
            "UPDATE memory_quota SET limit_bytes = GREATEST(1024, used_bytes * 7 / 10) "
            "WHERE tier = 'long-term' AND user_id IN "
            "(SELECT id FROM users_user ORDER BY email LIMIT %s)",
            [n_over],
        )
        cur.execute("SET maintenance_work_mem = '1GB'")
        cur.execute(
            "CREATE INDEX memory_search_gin ON memory_memoryitem USING gin (search_vector)"
        )
        cur.execute(
            "CREATE INDEX memory_tags_gin ON memory_memoryitem USING gin (tags)"
        )
        for table in (
            "memoryitem",
            "memoryembedding",
            "retrievalrecord",
            "goal",
            "quota",
        ):
            cur.execute(f"VACUUM ANALYZE memory_{table}")
    log(f"loaded {total:,} memories in {time.perf_counter() - t:.0f}s")
    return (
        f"{n_users:,} users, {total:,} memories ({per_user // 5}-{per_user * 9 // 5} per user); "
        "10% short-term (half past the 24 h lifetime), 70% long-term, 20% permanent; "
        "5% of the others archived up to 60 days ago (about half past the 30-day grace); "
        "30% seen in the last 30 days with 1-4 retrieval records each; 6% with feedback; "
        f"2% protected; half the users have 1-3 goals; {n_over:,} users ({over_share:.0%}) "
        "hold 1/0.7 of their long-term quota; every memory has a vector (HNSW index not built: "
        "meditation never searches it)"
    )


def _worker_hwm_mb(root_pid: int) -> float:
    """Largest VmHWM among the worker's child processes, in MB."""
    best = 0.0
    for child in Path(f"/proc/{root_pid}/task/{root_pid}/children").read_text().split():
        for line in Path(f"/proc/{child}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                best = max(best, int(line.split()[1]) / 1024)
    return best


def run_pass(db: str, workers: int, nights: list[tuple[str, bool, int]]) -> list[dict]:
    """Start `workers` Celery processes on database `db` and run the given nights."""
    from django.conf import settings

    from memory.meditation import meditation_queue_all
    from memory.models import MeditationRun

    _switch_db(db)
    env = dict(os.environ, LOG_LEVEL="WARNING")
    worker = subprocess.Popen(
        [
            str(ROOT / ".venv" / "bin" / "celery"),
            "-A",
            "kimberly.celery",
            "worker",
            *("-Q", ",".join(settings.CELERY_QUEUE_NAMES)),
            "-c",
            str(workers),
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    rows = []
    try:
        time.sleep(25)  # workers import Django and warm the embedding model
        base = datetime.now(UTC)
        for label, dry_run, day in nights:
            started = time.perf_counter()
            parent = meditation_queue_all(
                dry_run=dry_run, as_of=base + timedelta(days=day)
            )
            while True:
                parent.refresh_from_db()
                if parent.status != MeditationRun.State.QUEUED:
                    break
                if worker.poll() is not None:
                    raise RuntimeError("the worker died")
                time.sleep(0.25)
            elapsed = time.perf_counter() - started
            rows.append(
                {
                    "pass": label,
                    "workers": workers,
                    "seconds": elapsed,
                    "status": parent.status,
                    "users": parent.children.count(),
                    "processed": parent.processed,
                    "items_per_s": parent.processed / elapsed,
                    "promoted": parent.promoted,
                    "expired": parent.expired,
                    "archived": parent.archived,
                    "purged": parent.purged,
                    "rss_mb": _worker_hwm_mb(worker.pid),
                }
            )
            log(str(rows[-1]))
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(60)
        _switch_db(TEMPLATE)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--per-user", type=int, default=100)
    ap.add_argument("--over-quota-share", type=float, default=0.1)
    ap.add_argument("--reload", action="store_true", help="rebuild the template")
    ap.add_argument(
        "--week",
        action="store_true",
        help="instead: 2 workers, a first night then six more nights in a row",
    )
    ap.add_argument("--name", default="meditation_scale")
    args = ap.parse_args()
    django_for_bench(TEMPLATE)
    key = f"{args.users}:{args.per_user}:{args.over_quota_share}"
    if (
        args.reload
        or not STATE.exists()
        or not STATE.read_text().startswith(key + "\n")
    ):
        STATE.write_text(
            key + "\n" + load_template(args.users, args.per_user, args.over_quota_share)
        )
    data = STATE.read_text().split("\n", 1)[1]

    rows = []
    plan = [
        (1, [("first night", False, 0), ("next night", False, 1)]),
        (2, [("first night", False, 0), ("next night", False, 1)]),
        (2, [("dry run (forecast)", True, 0)]),
    ]
    if args.week:
        plan = [
            (
                2,
                [("first night", False, 0)]
                + [(f"night {d + 1}", False, d) for d in range(1, 7)],
            )
        ]
    for n, (workers, nights) in enumerate(plan):
        copy = f"kimberly_bench_meditation_{n}"
        started = time.perf_counter()
        fresh_copy(TEMPLATE, copy)
        log(f"copied the template in {time.perf_counter() - started:.0f}s")
        rows += run_pass(copy, workers, nights)
        drop_copy(TEMPLATE, copy)

    lines = [
        "# Meditation at scale",
        "",
        f"- when: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: {machine()}",
        f"- command: `.venv/bin/python bench/meditation_scale.py --users {args.users} "
        f"--per-user {args.per_user} --over-quota-share {args.over_quota_share}"
        f"{' --week --name ' + args.name if args.week else ''}`",
        f"- data: {data}",
        "- end to end: `meditation_queue_all` (the nightly beat task's code) creates the "
        "scope-all run and one child run per user, sends `meditate_batch` tasks of "
        "MEDITATION_BATCH_USERS users to the real broker, and `celery worker -c N` runs "
        "them (one transaction per user: scoring SQL, retention decisions, apply, history, "
        "audit events); the clock stops when the scope-all run is done. PostgreSQL, "
        "Valkey and the workers share the same 2 cores",
        '- each row group starts from a fresh copy of the template; "first night" rewrites '
        'every stored score (all start at 0.5), "next night" is the following night '
        "(as_of + 1 day) on the result",
        "- between nights nothing new arrives (no new memories, retrievals or feedback): "
        "later nights measure re-scoring and the rewrites of scores that drifted past "
        "MEDITATION_SCORE_EPSILON",
        "- peak RSS is the largest worker process's high-water mark; it includes the "
        "MiniLM model each worker loads at start for embedding (meditation does not use it)",
        "",
        "| pass | workers | seconds | users | memories scored | memories/s | promoted | "
        "expired | archived | purged | peak RSS per worker (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['pass']}{'' if r['status'] == 'done' else ' (' + r['status'] + ')'} "
            f"| {r['workers']} | {r['seconds']:.1f} | {r['users']:,} | {r['processed']:,} "
            f"| {r['items_per_s']:,.0f} | {r['promoted']:,} | {r['expired']:,} "
            f"| {r['archived']:,} | {r['purged']:,} | {r['rss_mb']:.0f} |"
        )
    lines += ["", "Target (issue #5): <= 60 s for 1M memories on this machine.", ""]
    out = ROOT / "bench" / "reports" / f"{args.name}.md"
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
