"""Where a meditation run's time goes: per-statement timings and WAL volume.

Runs the nightly batches for the first --users users of the meditation_scale
template (bench/meditation_scale.py builds it) in this one process, on a fresh
copy, for a first night and the next night, timing every SQL statement through
Django's execute_wrapper and reading the WAL written (pg_current_wal_lsn).

    .venv/bin/python bench/meditation_profile.py [--users 1000] [--batch 50]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from datetime import timedelta

from _setup import ROOT, django_for_bench, machine
from meditation_scale import TEMPLATE, drop_copy, fresh_copy

COPY = "kimberly_bench_meditation_profile"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--name", default="meditation_profile")
    args = ap.parse_args()
    django_for_bench(TEMPLATE)
    from django.db import connection
    from django.utils import timezone

    fresh_copy(TEMPLATE, COPY)
    from memory.meditation import meditation_run_batch
    from memory.meditation.dispatch import _create_all_run
    from memory.meditation.runs import user_run
    from memory.models import MeditationRun
    from users.models import User

    users = list(User.objects.order_by("email")[: args.users])
    n = len(users)
    lines = [
        "# Meditation profile: where the time goes",
        "",
        f"- when: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: {machine()}",
        f"- command: `.venv/bin/python bench/meditation_profile.py --users {args.users} "
        f"--batch {args.batch}`",
        f"- {n} users of the meditation_scale template, batches of {args.batch}, one "
        "process (no Celery), a fresh copy of the template; statement times are "
        'wall-clock round trips seen by Django; "Python" is the rest',
        "",
    ]
    base = timezone.now()
    for night, label in ((0, "first night"), (1, "next night")):
        times: dict[str, float] = defaultdict(float)

        def wrapper(execute, sql, params, many, context, times=times):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                times[" ".join(sql.split())[:70]] += time.perf_counter() - started

        parent = _create_all_run(dry_run=False, as_of=base + timedelta(days=night))
        ids = [
            r.pk
            for r in MeditationRun.objects.bulk_create(
                [
                    user_run(u, dry_run=False, as_of=parent.as_of, parent=parent)
                    for u in users
                ]
            )
        ]
        with connection.cursor() as cur:
            cur.execute("SELECT pg_current_wal_lsn()")
            lsn = cur.fetchone()[0]
        started = time.perf_counter()
        with connection.execute_wrapper(wrapper):
            for i in range(0, n, args.batch):
                meditation_run_batch(ids[i : i + args.batch])
        total = time.perf_counter() - started
        with connection.cursor() as cur:
            cur.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", [lsn])
            wal = float(cur.fetchone()[0])
        parent.refresh_from_db()
        sql = sum(times.values())
        lines += [
            f"## {label}: {total:.1f} s for {n} users ({total / n * 1000:.1f} ms per user), "
            f"{parent.processed:,} memories, {wal / 2**20:,.0f} MB of WAL",
            "",
            "| statement | ms per user | share |",
            "|---|---:|---:|",
        ]
        for stmt, t in sorted(times.items(), key=lambda kv: -kv[1])[:12]:
            lines.append(f"| `{stmt}` | {t / n * 1000:.2f} | {t / total:.0%} |")
        lines += [f"| Python (ORM, audit hashing, ...) | {(total - sql) / n * 1000:.2f} "
                  f"| {(total - sql) / total:.0%} |", ""]  # fmt: skip
        print("\n".join(lines[-18:]))
    drop_copy(TEMPLATE, COPY)
    out = ROOT / "bench" / "reports" / f"{args.name}.md"
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
