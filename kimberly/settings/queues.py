"""Celery queues and which tasks go where (imported by base.py).

The design runs separate, separately scaled workers for embedding, meditation
and agents: a burst of one never starves the others. Each queue below has its
own worker in deploy/k8s (a Deployment each), fly.toml (a process group each)
and the Procfile; `make run` on a small machine runs one worker for the three
light queues (scripts/serve.sh). Scans and sweeps that only find work and queue
it stay on the default queue, so a worker busy with long tasks never holds them
back. Whatever lists the queues (the test workers, the deploy checks, a
per-queue depth metric) reads CELERY_QUEUE_NAMES rather than naming them again.
"""

from __future__ import annotations

CELERY_TASK_DEFAULT_QUEUE = "celery"  # Celery's own default name: everything else
EMBEDDING_QUEUE = "embedding"
MEDITATION_QUEUE = "meditation"
AGENT_QUEUE = "agents"
CELERY_QUEUE_NAMES = (
    CELERY_TASK_DEFAULT_QUEUE,
    EMBEDDING_QUEUE,
    MEDITATION_QUEUE,
    AGENT_QUEUE,
)

CELERY_TASK_ROUTES = {
    # the model's forward passes: CPU-heavy, batched
    "memory.tasks.embed_pending": {"queue": EMBEDDING_QUEUE},
    "memory.tasks.embed_goals": {"queue": EMBEDDING_QUEUE},
    # scoring and retention, nightly for every user or on request for one
    "memory.tasks.meditate_all": {"queue": MEDITATION_QUEUE},
    "memory.tasks.meditate_batch": {"queue": MEDITATION_QUEUE},
    "memory.tasks.meditate_user": {"queue": MEDITATION_QUEUE},
    # agent task executions (the reminder scans, the sweep and webhook
    # deliveries stay on the default queue)
    "agents.tasks.run_task": {"queue": AGENT_QUEUE},
}
