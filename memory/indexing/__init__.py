"""Keeping memories semantically searchable: the embed queue, batch embedding,
user-supplied vectors and re-embedding after a model change.

Flow: a write commits → its id joins a Redis set and one `embed_pending` task is
scheduled (unless one already is) → the worker drains the set in batches, so a
burst of writes becomes a few batched model calls. The set is only a queue: a
sweep task finds anything it lost (Redis restart) from PostgreSQL.

    queue.py    the Redis queue and its drain task
    vectors.py  storing the model's or the user's vectors; dropping stale ones
    repair.py   the sweep and `memory reembed`, for memories and goals
"""

from memory.indexing.queue import (
    PENDING_KEY,
    RETRY_BACKOFF_MAX,
    SCHEDULED_KEY,
    drain_pending,
    drain_released,
    embedding_wanted,
    enqueue_embedding,
    enqueue_on_commit,
)
from memory.indexing.repair import (
    ReembedResult,
    drop_refused_vectors,
    goals_embed,
    goals_needing_vectors,
    memory_reembed,
    sweep_unembedded,
)
from memory.indexing.vectors import (
    USER_MODEL_TAG,
    memory_drop_vectors,
    memory_embed_items,
    memory_embed_user_vectors,
)

__all__ = [
    "PENDING_KEY",
    "RETRY_BACKOFF_MAX",
    "SCHEDULED_KEY",
    "USER_MODEL_TAG",
    "ReembedResult",
    "drain_pending",
    "drain_released",
    "drop_refused_vectors",
    "embedding_wanted",
    "enqueue_embedding",
    "enqueue_on_commit",
    "goals_embed",
    "goals_needing_vectors",
    "memory_drop_vectors",
    "memory_embed_items",
    "memory_embed_user_vectors",
    "memory_reembed",
    "sweep_unembedded",
]
