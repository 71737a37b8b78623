"""Query plans of retrieval under row-level security, on retrieval_speed's data.

Run bench/retrieval_speed.py first (any size); this EXPLAINs, as one of its users
(kimberly.rls.acting_user), the queries retrieval makes: lexical candidates
(the user's own rows, deliberately not the GIN index), full text through the GIN
index, HNSW and exact vector candidates. Row-level security adds its policy to
every scan; a user qual that is not leakproof (`@@`, `@>`) cannot be used as an
index condition below it, which is what this shows.

    .venv/bin/python bench/rls_plans.py [--query "what did I say about tea"]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from _setup import django_for_bench, log

DB = "kimberly_bench_speed"


def _scope(user_id: Any) -> Any:
    try:
        from kimberly import rls
    except ImportError:  # a checkout from before row-level security
        return contextlib.nullcontext()
    return rls.acting_user(user_id)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--query", default="what did I tell you about my sister's trip")
    args = ap.parse_args()
    django_for_bench(DB)
    from django.db import connection
    from pgvector.django import CosineDistance

    from memory import embeddings
    from memory.models import MemoryEmbedding, MemoryItem
    from memory.retrieval import QueryFilters, prefiltered
    from memory.retrieval.candidates import _UnindexedTsvector, or_query
    from users.models import User

    with contextlib.ExitStack() as stack:
        try:
            from kimberly import rls

            stack.enter_context(rls.maintenance("bench: pick a user"))
        except ImportError:
            pass
        user = User.objects.filter(email__startswith="speed-").order_by("email")[7]
    tsq = or_query(args.query)
    vec = embeddings.embed_texts([args.query])[0]
    with connection.cursor() as cur:
        cur.execute(
            "SELECT proname, proleakproof FROM pg_proc WHERE proname IN "
            "('ts_match_vq', 'arraycontains', 'uuid_eq', 'vector_cosine_distance')"
            " ORDER BY 1"
        )
        log(f"leakproof: {cur.fetchall()}")
    with _scope(user.pk):
        base = prefiltered(user, "any", QueryFilters())
        plans = {
            "lexical candidates (the user's rows, no GIN)": base.annotate(
                doc=_UnindexedTsvector("search_vector")
            )
            .filter(doc=tsq)
            .values_list("id", flat=True)[:50],
            "full text through the GIN index": MemoryItem.objects.filter(
                user=user, search_vector=tsq
            ).values_list("id", flat=True)[:50],
            "unscoped full text (only the policy filters)": MemoryItem.objects.filter(
                search_vector=tsq
            ).values_list("id", flat=True)[:50],
            "HNSW candidates": MemoryEmbedding.objects.filter(user=user, item__in=base)
            .order_by(CosineDistance("vector", vec))
            .values_list("item_id", flat=True)[:10],
            "exact candidates": base.filter(embedding__isnull=False)
            .annotate(dist=CosineDistance("embedding__vector", vec))
            .order_by("dist")
            .values_list("id", flat=True)[:10],
        }
        for name, qs in plans.items():
            print(f"\n## {name}\n")
            print(qs.explain(analyze=True))


if __name__ == "__main__":
    sys.exit(main())
