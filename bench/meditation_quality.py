"""Retrieval quality before and after a meditation run (../shared/bench).

Every LongMemEval memory is stored as a long-term memory (memory.services, real
quotas) and embedded once into a base database. Each scenario starts from a
fresh copy of it, runs meditation for every user (memory.meditation, as of the
user's last question), then asks every question through memory_query (hybrid,
shipped defaults), exactly as bench/retrieval_quality.py does:

- before: no meditation (every stored score is the initial 0.5);
- after, quotas fit: the default quotas, which every user fits: nothing may be
  archived, and re-scoring alone must not hurt recall;
- after, tight quota: each user's long-term quota is cut to --tight of what they
  hold, so meditation archives their lowest-scoring memories; recall is reported
  for all questions and for the questions whose evidence all stayed, against
  "before" on the same questions.

    .venv/bin/python bench/meditation_quality.py [--tight 0.7] [--limit-users N]
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid

from _setup import ROOT, django_for_bench, machine
from meditation_scale import drop_copy, fresh_copy
from retrieval_quality import DATA, _when, evaluate, ingest, load

BASE = "kimberly_bench_medq_base"
STATE = ROOT / "var" / "bench-medq-state.json"
METRICS = ("recall@5", "recall@10", "hit@5", "ndcg@10")
LAMBDAS = (0.5, 0.7, 0.85, 1.0)


def _users(state: list) -> list[tuple[object, dict[str, uuid.UUID], list[dict]]]:
    from users.models import User

    by_id = User.objects.in_bulk([u for u, _, _ in state])
    return [
        (by_id[uuid.UUID(u)], {k: uuid.UUID(v) for k, v in keys.items()}, queries)
        for u, keys, queries in state
    ]


def meditate(users, tight: float | None) -> dict[str, int]:
    from django.db.models import Sum

    from kimberly.context import Actor, Context
    from memory.meditation import meditation_run
    from memory.models import MemoryItem, Quota

    ctx = Context(Actor.system("bench"))
    totals = {"processed": 0, "archived": 0, "expired": 0, "promoted": 0}
    for user, _, queries in users:
        if tight is not None:
            held = (
                MemoryItem.objects.filter(
                    user=user, tier="long-term", status="active"
                ).aggregate(n=Sum("size_bytes"))["n"]
                or 0
            )
            Quota.objects.filter(user=user, tier="long-term").update(
                limit_bytes=max(1, int(held * tight))
            )
        asked = [_when(q["asked_at"]) for q in queries if q.get("asked_at")]
        # users without questions are not evaluated; their as_of does not matter
        run = meditation_run(ctx=ctx, user=user, as_of=max(asked) if asked else None)
        for k in totals:
            totals[k] += getattr(run, k)
    return totals


def evidence_survival(users) -> tuple[float, float, set[str]]:
    """Share of evidence memories still active, share of all memories still
    active, and the ids of questions whose evidence all stayed."""
    from memory.models import MemoryItem

    active = set(
        MemoryItem.objects.filter(status="active").values_list("id", flat=True)
    )
    ev_total = ev_kept = all_total = all_kept = 0
    kept_questions = set()
    for _, keymap, queries in users:
        all_total += len(keymap)
        all_kept += sum(1 for i in keymap.values() if i in active)
        for q in queries:
            ids = {keymap[k] for k in q["evidence"] if k in keymap}
            ev_total += len(ids)
            ev_kept += len(ids & active)
            if ids and ids <= active:
                kept_questions.add(q["qid"])
    return ev_kept / max(1, ev_total), all_kept / max(1, all_total), kept_questions


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tight", type=float, default=0.7)
    ap.add_argument("--limit-users", type=int, default=None)
    ap.add_argument("--name", default="meditation_quality")
    args = ap.parse_args()
    django_for_bench(BASE)
    files = sorted(DATA.glob("*.jsonl"))
    key = f"{args.limit_users}"
    if not STATE.exists() or json.loads(STATE.read_text()).get("key") != key:
        from django.db import connection

        with connection.cursor() as cur:
            cur.execute("TRUNCATE users_user CASCADE")
        state = {"key": key, "datasets": {}}
        for name, records in load(files, args.limit_users).items():
            users = ingest(records, name.replace("_", "-"), tier="long-term")
            state["datasets"][name] = [
                (str(u.pk), {k: str(v) for k, v in keys.items()}, queries)
                for u, keys, queries in users
            ]
        STATE.write_text(json.dumps(state))
    state = json.loads(STATE.read_text())

    from django.conf import settings

    shipped = settings.RETRIEVAL_LAMBDA

    lines = [
        "# Retrieval quality before and after meditation",
        "",
        f"- when: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: {machine()}",
        f"- command: `.venv/bin/python bench/meditation_quality.py --tight {args.tight}"
        f"{' --limit-users ' + str(args.limit_users) if args.limit_users else ''}`",
        "- every memory stored as long-term and embedded once; each scenario starts from "
        "a copy of that database; meditation (scoring v1, shipped settings) runs per user "
        "as of the user's last question; questions go through memory_query (hybrid, shipped "
        "defaults, ranked as of asked_at), as in retrieval_quality.md",
        "- these users have no goals, feedback or retrieval history, so their scores come "
        "from recency and sentiment only: the test is that re-scoring and pruning do not "
        "quietly hurt recall",
        "",
    ]
    n_copy = 0
    for name, dstate in state["datasets"].items():
        results = {}
        survival = {}
        sweep: dict[tuple[str, float], dict[str, float]] = {}
        for scenario, tight in (
            ("before", None),
            ("after, quotas fit", "fit"),
            (f"after, tight quota ({args.tight:.0%})", args.tight),
        ):
            fresh_copy(BASE, f"kimberly_bench_medq_{n_copy}")
            n_copy += 1
            users = _users(dstate)
            run = (
                meditate(users, None if tight == "fit" else tight)
                if tight is not None
                else {}
            )
            ev, allm, kept = evidence_survival(users)
            survival[scenario] = (run, ev, allm, kept)
            results[scenario] = _per_question(users)
            if tight in (None, "fit"):
                for lam in LAMBDAS:
                    settings.RETRIEVAL_LAMBDA = lam
                    sweep[(scenario, lam)] = _mean(_per_question(users))
                settings.RETRIEVAL_LAMBDA = shipped
            print(name, scenario, run, f"evidence kept {ev:.3f}, all kept {allm:.3f}")
        before = results["before"]
        lines += [
            f"## {name}: {len(dstate)} users, {len(before)} questions",
            "",
            "| scenario | archived | memories kept | evidence kept | questions | "
            "recall@5 | recall@10 | hit@5 | NDCG@10 | same questions before: recall@5 / NDCG@10 |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for scenario, per_q in results.items():
            run, ev, allm, kept = survival[scenario]
            rows = [
                (scenario, per_q, per_q.keys()),
            ]
            if scenario.startswith("after, tight"):
                rows.append(
                    (
                        "... only questions whose evidence all stayed",
                        per_q,
                        kept & per_q.keys(),
                    )
                )
            for label, pq, qids in rows:
                qids = sorted(qids)
                mean = {m: sum(pq[q][m] for q in qids) / len(qids) for m in METRICS}
                ref = {m: sum(before[q][m] for q in qids) / len(qids) for m in METRICS}
                first = label == scenario
                lines.append(
                    f"| {label} | {run.get('archived', 0) if first else ''} "
                    f"| {allm:.1%} | {ev:.1%} | {len(qids)} | "
                    + " | ".join(f"{mean[m]:.3f}" for m in METRICS)
                    + f" | {ref['recall@5']:.3f} / {ref['ndcg@10']:.3f} |"
                )
        lines += [
            "",
            "Weight of the stored score in ranking (`final = λ·relevance + (1-λ)·score "
            f"+ w·freshness`; shipped λ = {shipped}): recall@5 / NDCG@10, all questions",
            "",
            "| λ | before | after, quotas fit | change in recall@5 |",
            "|---:|---|---|---:|",
        ]
        for lam in LAMBDAS:
            b, a = sweep[("before", lam)], sweep[("after, quotas fit", lam)]
            lines.append(
                f"| {lam} | {b['recall@5']:.3f} / {b['ndcg@10']:.3f} "
                f"| {a['recall@5']:.3f} / {a['ndcg@10']:.3f} "
                f"| {a['recall@5'] - b['recall@5']:+.3f} |"
            )
        lines.append("")
    for n in range(n_copy):
        drop_copy(BASE, f"kimberly_bench_medq_{n}")
    out = ROOT / "bench" / "reports" / f"{args.name}.md"
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


def _mean(per_q: dict[str, dict[str, float]]) -> dict[str, float]:
    return {m: sum(q[m] for q in per_q.values()) / len(per_q) for m in METRICS}


def _per_question(users) -> dict[str, dict[str, float]]:
    """Metrics per question id (evaluate() averages; here one user at a time)."""
    out = {}
    for user, keymap, queries in users:
        for q in queries:
            res = evaluate([(user, keymap, [q])], "hybrid")
            if "ALL" in res:
                out[q["qid"]] = {m: res["ALL"][m] for m in METRICS}
    return out


if __name__ == "__main__":
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    main()
