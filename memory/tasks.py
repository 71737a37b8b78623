"""Background jobs of the memory app: thin wrappers over services."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task
from django.conf import settings

from kimberly import rls, storage
from memory import indexing, meditation, retrieval, services
from memory.embeddings import EmbeddingUnavailable
from memory.imports import services as imports
from memory.imports import upkeep as import_upkeep


@shared_task(
    name="memory.tasks.purge_idempotency_keys", time_limit=300, soft_time_limit=270
)
@rls.task_scope(maintenance="sweep: old idempotency keys of every user")
def purge_idempotency_keys() -> int:
    return services.idempotency_keys_purge(
        older_than_hours=settings.IDEMPOTENCY_TTL_HOURS
    )


class _DrainTask(Task):
    def on_failure(self, *args: Any, **kwargs: Any) -> None:
        # Retries exhausted (or a non-retried error): the drain flag the retries
        # kept must go, or embedding would stall until it expires.
        indexing.drain_released()


@shared_task(
    name="memory.tasks.embed_pending",
    base=_DrainTask,
    autoretry_for=(EmbeddingUnavailable,),
    retry_backoff=2,
    retry_backoff_max=indexing.RETRY_BACKOFF_MAX,
    retry_jitter=True,
    max_retries=8,
    time_limit=900,
    soft_time_limit=840,
)
@rls.task_scope(maintenance="embedding queue: items of any user, in batches")
def embed_pending() -> int:
    """Drain the embed queue in batches (idempotent: re-embedding is skipped by hash)."""
    return indexing.drain_pending(
        batch_size=settings.EMBEDDING_BATCH_SIZE,
        linger=settings.EMBEDDING_LINGER_SECONDS,
    )


@shared_task(
    name="memory.tasks.embed_goals",
    autoretry_for=(EmbeddingUnavailable,),
    retry_backoff=2,
    retry_backoff_max=indexing.RETRY_BACKOFF_MAX,
    max_retries=8,
    time_limit=300,
    soft_time_limit=270,
)
@rls.task_scope(maintenance="re-embedding goals of any user (memory reembed)")
def embed_goals(goal_ids: list[int]) -> int:
    """(Re-)embed goals queued by `memory reembed`; gone goals are skipped."""
    return indexing.goals_embed(goal_ids)


@shared_task(name="memory.tasks.sweep_unembedded", time_limit=300, soft_time_limit=270)
@rls.task_scope(maintenance="sweep: unembedded items of every user")
def sweep_unembedded() -> int:
    return indexing.sweep_unembedded()


@shared_task(
    name="memory.tasks.flush_retrieval_log", time_limit=120, soft_time_limit=100
)
@rls.task_scope(maintenance="retrieval log: records of any user, in batches")
def flush_retrieval_log() -> int:
    return retrieval.flush_retrieval_log()


@shared_task(name="memory.tasks.meditate_user", time_limit=900, soft_time_limit=840)
@rls.task_scope(owner=rls.owner_of("memory.MeditationRun", "run_id"))
def meditate_user(run_id: int) -> int:
    """Score one user's memories for a queued run; a finished run is left alone."""
    return meditation.meditation_run_batch([run_id])


@shared_task(name="memory.tasks.meditate_batch", time_limit=3600, soft_time_limit=3540)
@rls.task_scope(maintenance="meditation batch: several users' runs")
def meditate_batch(run_ids: list[int]) -> int:
    """A batch of users' queued runs of the nightly scope-all run."""
    return meditation.meditation_run_batch(run_ids)


@shared_task(
    name="memory.tasks.requeue_stale_meditations", time_limit=300, soft_time_limit=270
)
@rls.task_scope(maintenance="sweep: stale meditation runs of every user")
def requeue_stale_meditations() -> int:
    """Send again user runs left queued (safe: runs are re-checked under lock)."""
    return meditation.meditation_requeue_stale()


@shared_task(name="memory.tasks.meditate_all", time_limit=600, soft_time_limit=540)
@rls.task_scope(maintenance="nightly meditation: queue a run for every user")
def meditate_all() -> int:
    """Nightly: a scope-all run whose user runs fan out across the workers in batches."""
    return meditation.meditation_queue_all().pk


@shared_task(
    name="memory.tasks.import_run", bind=True, time_limit=600, soft_time_limit=540
)
@rls.task_scope(owner=rls.owner_of("memory.MemoryImport", "import_id"))
def import_run(self: Task, import_id: str) -> str:
    """Run a queued import; a gone or finished one is left alone.

    Hands over to a fresh task well before the soft time limit (progress is kept
    per batch). While another worker holds the import, retry after the time that
    worker has to show progress: then it is done, or dead and claimable.
    """
    budget = 0.8 * float(self.soft_time_limit or 540)
    try:
        return imports.memory_import_run(import_id=import_id, budget_seconds=budget)
    except imports.ImportBusy as exc:
        raise self.retry(
            exc=exc, countdown=imports.STALE_SECONDS, max_retries=5
        ) from exc
    except storage.StorageUnavailable as exc:
        countdown = min(300, 10 * 2**self.request.retries)
        raise self.retry(exc=exc, countdown=countdown, max_retries=8) from exc


@shared_task(
    name="memory.tasks.delete_attachment_object",
    autoretry_for=(storage.StorageUnavailable,),
    retry_backoff=2,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=12,
    time_limit=60,
    soft_time_limit=50,
)
@rls.task_scope(no_rows="an object in storage; the row is gone")
def delete_attachment_object(key: str) -> None:
    """The object of a deleted attachment that storage refused at the time (safe
    twice: a missing object is not an error; keys are never reused)."""
    storage.delete(key)


@shared_task(
    name="memory.tasks.requeue_stale_imports", time_limit=300, soft_time_limit=270
)
@rls.task_scope(maintenance="sweep: stale imports of every user")
def requeue_stale_imports() -> int:
    """Send again imports no worker holds; delete files finished imports left."""
    return import_upkeep.memory_imports_requeue_stale()


@shared_task(name="memory.tasks.purge_withdrawn_sensitive")
@rls.task_scope(maintenance="purge: sensitive items past a withdrawal, every user")
def purge_withdrawn_sensitive() -> int:
    """Delete sensitive items whose consent was withdrawn past the grace period."""
    from memory.services.consent import purge_withdrawn_sensitive as purge

    return purge()
