"""Retrieval quality on LongMemEval subsets (../shared/bench/*.jsonl).

Every memory is stored through memory.services (real quotas, real rows) and
embedded through memory.indexing (the worker's code path); every query goes
through memory.retrieval.memory_query. Reports recall@5, recall@10 (fraction of
evidence keys found), hit@5 and NDCG@10 for lexical, semantic and hybrid, and
for the fusion variants, overall and per category.

    .venv/bin/python bench/retrieval_quality.py [--limit-users N] [--files a.jsonl ...]
"""

from __future__ import annotations

import argparse
import json
import math
import time
import uuid
from collections import defaultdict
from pathlib import Path

from _setup import ROOT, django_for_bench, machine

# ../shared/bench beside the checkout (/work/main), or two up from a worktree (/work/wt/x)
DATA = next(
    (
        d
        for d in (
            ROOT.parent / "shared" / "bench",
            ROOT.parents[1] / "shared" / "bench",
        )
        if d.is_dir()
    ),
    ROOT.parent / "shared" / "bench",
)
BATCH = 256


def load(files: list[Path], limit: int | None) -> dict[str, list[dict]]:
    out = {}
    for f in files:
        records = [json.loads(line) for line in f.open()]
        out[f.stem] = records[:limit] if limit else records
    return out


def ingest(
    records: list[dict], tag: str, tier: str = "permanent"
) -> list[tuple[object, dict[str, uuid.UUID], list[dict]]]:
    from kimberly.context import Actor, Context
    from memory import indexing, services
    from users.models import User

    users = []
    pending: list[uuid.UUID] = []
    ctx = Context(Actor.system("bench"))
    started = time.perf_counter()
    for n, rec in enumerate(records):
        user = User.objects.create_user(
            email=f"{tag}-{n}-{uuid.uuid4().hex[:6]}@bench.local", password=None
        )
        keymap = {}
        for mem in rec["memories"]:
            item = services.memory_create(
                ctx=ctx,
                user=user,
                tier=tier,
                content=mem["text"],
                metadata={"source": "import"},
                created_at=_when(mem.get("created_at")),
            ).item
            keymap[mem["key"]] = item.id
            pending.append(item.id)
        users.append((user, keymap, rec["queries"]))
    stored = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(0, len(pending), BATCH):
        indexing.memory_embed_items(pending[i : i + BATCH])
    embedded = time.perf_counter() - started
    print(
        f"{tag}: stored {len(pending)} memories in {stored:.1f}s, embedded in {embedded:.1f}s "
        f"({len(pending) / embedded:.0f}/s)"
    )
    return users


def _when(raw: str | None):
    from datetime import UTC, datetime

    return datetime.fromisoformat(raw).replace(tzinfo=UTC) if raw else None


def evaluate(users, mode: str) -> dict[str, dict[str, float]]:
    from memory.retrieval import memory_query

    per_cat: dict[str, list[dict[str, float]]] = defaultdict(list)
    for user, keymap, queries in users:
        for q in queries:
            evidence = {keymap[k] for k in q["evidence"] if k in keymap}
            if not evidence:
                continue
            # Ranked as of when the question was asked (freshness is relative to it).
            hits = memory_query(
                user=user,
                query=q["q"],
                top_k=10,
                mode=mode,
                log=False,
                now=_when(q.get("asked_at")),
            ).hits
            ranked = [h.item.id for h in hits]
            found5 = evidence & set(ranked[:5])
            found10 = evidence & set(ranked[:10])
            dcg = sum(
                1 / math.log2(r + 2) for r, i in enumerate(ranked[:10]) if i in evidence
            )
            idcg = sum(1 / math.log2(r + 2) for r in range(min(10, len(evidence))))
            m = {
                "recall@5": len(found5) / len(evidence),
                "recall@10": len(found10) / len(evidence),
                "hit@5": 1.0 if found5 else 0.0,
                "ndcg@10": dcg / idcg,
            }
            per_cat[q.get("category", "all")].append(m)
            per_cat["ALL"].append(m)
    return {
        cat: {k: sum(m[k] for m in ms) / len(ms) for k in ms[0]} | {"n": len(ms)}
        for cat, ms in per_cat.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", nargs="*", default=None)
    ap.add_argument("--limit-users", type=int, default=None)
    ap.add_argument("--name", default="retrieval_quality")
    args = ap.parse_args()
    django_for_bench("kimberly_bench_quality")

    from django.conf import settings

    files = (
        [Path(f) for f in args.files] if args.files else sorted(DATA.glob("*.jsonl"))
    )
    datasets = load(files, args.limit_users)
    variants = [
        ("lexical", "lexical", {}),
        ("semantic", "semantic", {}),
        (
            "hybrid weighted a=0.5",
            "hybrid",
            {"RETRIEVAL_FUSION": "weighted", "RETRIEVAL_SEMANTIC_WEIGHT": 0.5},
        ),
        (
            "hybrid weighted a=0.7",
            "hybrid",
            {"RETRIEVAL_FUSION": "weighted", "RETRIEVAL_SEMANTIC_WEIGHT": 0.7},
        ),
        (
            "hybrid weighted a=0.85",
            "hybrid",
            {"RETRIEVAL_FUSION": "weighted", "RETRIEVAL_SEMANTIC_WEIGHT": 0.85},
        ),
        ("hybrid rrf k=60", "hybrid", {"RETRIEVAL_FUSION": "rrf"}),
        (
            "hybrid weighted a=0.5, freshness w=1 (SPEC)",
            "hybrid",
            {
                "RETRIEVAL_FUSION": "weighted",
                "RETRIEVAL_SEMANTIC_WEIGHT": 0.5,
                "RETRIEVAL_FRESHNESS_WEIGHT": 1.0,
            },
        ),
        (
            "hybrid weighted a=0.5, freshness w=0.1",
            "hybrid",
            {
                "RETRIEVAL_FUSION": "weighted",
                "RETRIEVAL_SEMANTIC_WEIGHT": 0.5,
                "RETRIEVAL_FRESHNESS_WEIGHT": 0.1,
            },
        ),
    ]
    defaults = {
        "fusion": settings.RETRIEVAL_FUSION,
        "alpha": settings.RETRIEVAL_SEMANTIC_WEIGHT,
        "fresh": settings.RETRIEVAL_FRESHNESS_WEIGHT,
    }
    lines = [
        "# Retrieval quality (LongMemEval subsets)",
        "",
        f"- when: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: {machine()}",
        f"- command: `.venv/bin/python bench/retrieval_quality.py{' --limit-users ' + str(args.limit_users) if args.limit_users else ''}`",
        "- memories stored with memory.services.memory_create, embedded with memory.indexing "
        "(all-MiniLM-L6-v2, local), queried with memory.retrieval.memory_query (top_k=10); "
        "memories keep their original timestamps and each query is ranked as of its asked_at",
        "- variants without a freshness weight rank by relevance alone (w=0), so fusion choices "
        "are compared on relevance; the last two show what freshness does to it",
        f"- shipped default: fusion={defaults['fusion']}, semantic weight={defaults['alpha']}, "
        f"lambda={settings.RETRIEVAL_LAMBDA}, vector strategy={settings.RETRIEVAL_VECTOR_STRATEGY}",
        "- reference (issue #4): plain BM25 over user turns of LongMemEval S gets about hit@5 0.83, NDCG@10 0.67",
        "",
    ]
    for name, records in datasets.items():
        users = ingest(records, name.replace("_", "-"))
        results = {}
        for label, mode, overrides in variants:
            # Freshness off unless the variant sets it: the others compare relevance.
            settings.RETRIEVAL_FRESHNESS_WEIGHT = 0.0
            settings.RETRIEVAL_FUSION = defaults["fusion"]
            settings.RETRIEVAL_SEMANTIC_WEIGHT = defaults["alpha"]
            for k, v in overrides.items():
                setattr(settings, k, v)
            started = time.perf_counter()
            results[label] = evaluate(users, mode)
            print(
                f"{name} {label}: {results[label]['ALL']} ({time.perf_counter() - started:.1f}s)"
            )
        settings.RETRIEVAL_FUSION = defaults["fusion"]
        settings.RETRIEVAL_SEMANTIC_WEIGHT = defaults["alpha"]
        settings.RETRIEVAL_FRESHNESS_WEIGHT = defaults["fresh"]
        n_mem = sum(len(r["memories"]) for r in records)
        lines += [
            f"## {name}: {len(records)} users, {n_mem} memories, {results['lexical']['ALL']['n']:.0f} queries",
            "",
            "| variant | recall@5 | recall@10 | hit@5 | NDCG@10 |",
            "|---|---:|---:|---:|---:|",
        ]
        for label, res in results.items():
            a = res["ALL"]
            lines.append(
                f"| {label} | {a['recall@5']:.3f} | {a['recall@10']:.3f} | {a['hit@5']:.3f} | {a['ndcg@10']:.3f} |"
            )
        cats = sorted(c for c in results["lexical"] if c != "ALL")
        lines += [
            "",
            "Per category (recall@5 / hit@5 / NDCG@10):",
            "",
            "| category | n | " + " | ".join(results) + " |",
            "|---|---:|" + "---|" * len(results),
        ]
        for c in cats:
            row = [
                f"{results[v][c]['recall@5']:.2f} / {results[v][c]['hit@5']:.2f} / {results[v][c]['ndcg@10']:.2f}"
                for v in results
            ]
            lines.append(
                f"| {c} | {results['lexical'][c]['n']:.0f} | " + " | ".join(row) + " |"
            )
        lines.append("")
    out = ROOT / "bench" / "reports" / f"{args.name}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
