"""Meditation at scale: score and retain every memory of every user, timed.

Uses the 1M-memory database that bench/retrieval_speed.py loads (1,000 users x
1,000 memories; run that first). A share of the users gets a small long-term
quota override so that their run archives. Runs are real (they promote, expire
and archive), one transaction per user, with 1 worker process and then with 2
(users split between them); the second pass finds less to change.

    .venv/bin/python bench/meditation_scale.py [--over-quota-share 0.2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time

from _setup import ROOT, django_for_bench, machine

DB = "kimberly_bench_speed"


def _work(user_ids: list[str], dry_run: bool) -> tuple[int, int, dict[str, int], int]:
    django_for_bench(DB)
    from django.db import connection

    from kimberly.context import Actor, Context
    from memory.meditation import meditation_run
    from users.models import User

    ctx = Context(Actor.system("bench"))
    processed = 0
    counts = {"promoted": 0, "expired": 0, "archived": 0, "purged": 0}
    for user in User.objects.filter(pk__in=user_ids):
        run = meditation_run(ctx=ctx, user=user, dry_run=dry_run)
        processed += run.processed
        for k in counts:
            counts[k] += getattr(run, k)
    connection.close()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return len(user_ids), processed, counts, peak_kb


def run_pass(user_ids: list[str], workers: int, dry_run: bool) -> dict:
    chunks = [user_ids[i::workers] for i in range(workers)]
    started = time.perf_counter()
    with mp.get_context("spawn").Pool(workers) as pool:
        results = pool.starmap(_work, [(c, dry_run) for c in chunks])
    elapsed = time.perf_counter() - started
    processed = sum(r[1] for r in results)
    counts = {k: sum(r[2][k] for r in results) for k in results[0][2]}
    return {
        "workers": workers,
        "dry_run": dry_run,
        "seconds": elapsed,
        "processed": processed,
        "items_per_s": processed / elapsed,
        "peak_rss_mb": max(r[3] for r in results) / 1024,
        **counts,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--over-quota-share", type=float, default=0.2)
    ap.add_argument("--name", default="meditation_scale")
    args = ap.parse_args()
    django_for_bench(DB)
    from django.db.models import Count

    from memory.models import MemoryItem, Quota
    from users.models import User

    users = list(
        User.objects.filter(email__startswith="speed-")
        .order_by("email")
        .values_list("id", flat=True)
    )
    n_over = int(len(users) * args.over_quota_share)
    Quota.objects.filter(user_id__in=users).update(limit_bytes=None)
    # ~175 KB of long-term each: a 100 KB quota makes their runs archive ~40%.
    Quota.objects.filter(user_id__in=users[:n_over], tier="long-term").update(
        limit_bytes=100_000
    )
    by_status = dict(
        MemoryItem.objects.filter(user_id__in=users)
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    ids = [str(u) for u in users]
    rows = [
        run_pass(ids, 1, dry_run=True),
        run_pass(ids, 2, dry_run=True),
        run_pass(ids, 2, dry_run=False),
        run_pass(ids, 1, dry_run=False),
    ]
    for r in rows:
        print(r)
    lines = [
        "# Meditation at scale",
        "",
        f"- when: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: {machine()}",
        f"- command: `.venv/bin/python bench/meditation_scale.py --over-quota-share {args.over_quota_share}`",
        f"- data: the retrieval_speed database, {len(users)} users x ~1,000 memories "
        f"({by_status}); {n_over} users ({args.over_quota_share:.0%}) get a 100 KB long-term quota",
        "- each user's run is one transaction (scoring SQL, retention decisions, apply, "
        "audit events); worker processes split the users; PostgreSQL on the same 2 cores",
        "- pass order: dry 1 worker, dry 2 workers, real 2 workers, real 1 worker (the last "
        "real pass finds the quotas already satisfied and little left to change)",
        "",
        "| pass | workers | seconds | memories processed | memories/s | promoted | expired | archived | purged | peak RSS per worker (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {'dry run' if r['dry_run'] else 'real'} | {r['workers']} | {r['seconds']:.1f} | {r['processed']:,} "
            f"| {r['items_per_s']:,.0f} | {r['promoted']:,} | {r['expired']:,} | {r['archived']:,} "
            f"| {r['purged']:,} | {r['peak_rss_mb']:.0f} |"
        )
    lines += ["", "Target (issue #5): <= 60 s for 1M memories on this machine.", ""]
    out = ROOT / "bench" / "reports" / f"{args.name}.md"
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
