"""Background jobs of the memory app: thin wrappers over services."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from kimberly.context import Actor, Context
from memory import indexing, meditation, retrieval, services
from memory.embeddings import EmbeddingUnavailable
from memory.models import MeditationRun


@shared_task(
    name="memory.tasks.purge_idempotency_keys", time_limit=300, soft_time_limit=270
)
def purge_idempotency_keys() -> int:
    return services.idempotency_keys_purge(
        older_than_hours=settings.IDEMPOTENCY_TTL_HOURS
    )


@shared_task(
    name="memory.tasks.embed_pending",
    autoretry_for=(EmbeddingUnavailable,),
    retry_backoff=2,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=8,
    time_limit=900,
    soft_time_limit=840,
)
def embed_pending() -> int:
    """Drain the embed queue in batches (idempotent: re-embedding is skipped by hash)."""
    return indexing.drain_pending(batch_size=settings.EMBEDDING_BATCH_SIZE)


@shared_task(name="memory.tasks.sweep_unembedded", time_limit=300, soft_time_limit=270)
def sweep_unembedded() -> int:
    return indexing.sweep_unembedded()


@shared_task(
    name="memory.tasks.flush_retrieval_log", time_limit=120, soft_time_limit=100
)
def flush_retrieval_log() -> int:
    return retrieval.flush_retrieval_log()


@shared_task(name="memory.tasks.meditate_user", time_limit=900, soft_time_limit=840)
def meditate_user(run_id: int) -> int:
    """Score one user's memories for a queued run; a finished run is left alone."""
    run = MeditationRun.objects.select_related("user").filter(pk=run_id).first()
    if run is None or run.status != MeditationRun.State.QUEUED:
        return 0
    meditation.meditation_run(
        ctx=Context(Actor.system("meditation")), user=run.user, run=run
    )
    return run.processed


@shared_task(name="memory.tasks.meditate_all", time_limit=600, soft_time_limit=540)
def meditate_all() -> int:
    """Nightly: one queued run per user, fanned out across the workers."""
    return len(meditation.meditation_queue_all())
