"""Periodic upkeep of import jobs (memory.tasks.requeue_stale_imports).

A job can be left without a worker: its task was never delivered (the broker was
down when `_send` ran; the import is accepted and stays queued) or its retries
ran out, or its worker died. And a finished job's file stays in object storage
when deleting it hit an outage (its file_key is kept until the delete succeeds).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from memory.imports import services
from memory.imports.models import MemoryImport

logger = logging.getLogger(__name__)

State = MemoryImport.State
# A queued job no worker took for this long lost its task: sent again. Longer
# than the longest retry countdown of memory.tasks.import_run (300 s), so a job
# waiting for its retry is not sent twice.
QUEUED_STALE_SECONDS = 600
REQUEUE_MAX = 1000  # jobs sent again, and files deleted, per run


def memory_imports_requeue_stale() -> int:
    """Send again the jobs no worker holds; returns how many.

    Those queued for QUEUED_STALE_SECONDS (their task was lost: the broker was
    down when it was sent, or its retries ran out) and those running with a
    heartbeat older than STALE_SECONDS (their worker died). Harmless twice: the
    claim lets one task in. Then deletes the files finished jobs left behind.
    """
    now = timezone.now()
    queued_before = now - timedelta(seconds=QUEUED_STALE_SECONDS)
    silent_since = now - timedelta(seconds=services.STALE_SECONDS)
    # heartbeat_at: the claim and every batch set it, so a job handed over or
    # given back a moment ago is not stale; a job never claimed has none.
    stale = (
        MemoryImport.objects.annotate(seen=Coalesce("heartbeat_at", "created_at"))
        .filter(
            Q(status=State.QUEUED, seen__lt=queued_before)
            | Q(status=State.RUNNING, seen__lt=silent_since)
        )
        .order_by("seen")
        .values_list("pk", flat=True)
    )
    ids = list(stale[:REQUEUE_MAX])
    for pk in ids:
        services._send(pk)
    if ids:
        logger.info("sent %d stale imports again", len(ids))
    memory_import_files_cleanup()
    return len(ids)


def memory_import_files_cleanup() -> int:
    """Delete the files of finished jobs whose deletion failed; returns how many.

    Stops at the first outage (the next run tries again)."""
    done = (
        MemoryImport.objects.filter(status__in=[State.SUCCEEDED, State.FAILED])
        .exclude(file_key="")
        .only("pk", "file_key")
    )
    deleted = 0
    for imp in done[:REQUEUE_MAX]:
        if not services._delete_file(imp):
            break
        deleted += 1
    return deleted
