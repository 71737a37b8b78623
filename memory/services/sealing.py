"""Keeping memory.sealing's rules true for rows that already exist: the vectors
of sensitive items follow the model_context consent, and `./cli memory
seal-existing` seals what was stored before sealing (or before SEAL_ALL_CONTENT)."""

from __future__ import annotations

from django.db import transaction

from audit.services import audit_record
from kimberly.context import Context
from memory import indexing
from memory.models import MemoryEmbedding, MemoryItem
from memory.selectors import unsealed_items
from memory.services.changes import after_commit_sync, seal_versions
from users.models import User


def vector_consent_changed(ctx: Context, user: User, granted: bool) -> None:
    """model_context withdrawn: the vectors of the user's sensitive items go, in
    the consent's transaction; granted: they are queued to be made again."""
    items = MemoryItem.objects.filter(user=user, sensitive=True)
    if granted:
        if indexing.embedding_wanted(user):
            ids = list(items.values_list("pk", flat=True))
            transaction.on_commit(lambda: indexing.enqueue_embedding(ids))
        return
    # The item rows are locked as every writer of vectors locks them (id order),
    # so an embedding storing one of them now is either seen here or sees this.
    ids = list(items.select_for_update().order_by("pk").values_list("pk", flat=True))
    n, _ = MemoryEmbedding.objects.filter(item_id__in=ids).delete()
    MemoryItem.objects.filter(pk__in=ids).update(embedding_ref="")
    if n:
        audit_record(
            ctx=ctx,
            action="memory.vectors_drop",
            user_id=user.pk,
            target_type="memory",
            details={"items": n, "reason": "model_context_withdrawn"},
        )


BATCH = 200


def seal_existing(*, batch: int = BATCH) -> int:
    """Seal every item that should be sealed and is not, with its versions
    (idempotent: a second run finds nothing); returns how many items."""
    done = 0
    while True:
        with transaction.atomic():
            items = list(unsealed_items().select_for_update().order_by("pk")[:batch])
            for item in items:
                item.save(update_fields=["content", "sealed"])
                seal_versions(item)
            after_commit_sync(items)  # the session copy in Redis, sealed too
        done += len(items)
        if len(items) < batch:
            return done
