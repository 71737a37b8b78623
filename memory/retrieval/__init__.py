"""Hybrid retrieval of a user's memories, explained.

query.py       memory_query: validate, gather, fuse, re-rank, log
candidates.py  the user's pre-filtered rows matched by full text and vector
ranking.py     fusion and the final score, with every component and a why
provenance.py  which queries returned which memories: logged, written, pruned
"""

from memory.retrieval.candidates import QueryFilters, prefiltered, semantic_candidates
from memory.retrieval.provenance import (
    LOG_KEY,
    flush_retrieval_log,
    retrieval_records_prune,
)
from memory.retrieval.query import MAX_QUERY_CHARS, MODES, QueryResult, memory_query

__all__ = [
    "LOG_KEY",
    "MAX_QUERY_CHARS",
    "MODES",
    "QueryFilters",
    "QueryResult",
    "flush_retrieval_log",
    "memory_query",
    "prefiltered",
    "retrieval_records_prune",
    "semantic_candidates",
]
