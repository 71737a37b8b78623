"""Recording a BackupRun: succeeded, or failed with the error, always finished."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.utils import timezone

from backups.models import BackupRun


def finish(run: BackupRun, *, ok: bool = True, error: str = "") -> None:
    run.status = BackupRun.Status.SUCCEEDED if ok else BackupRun.Status.FAILED
    run.error = error[:4000]
    run.finished_at = timezone.now()
    run.save()


@contextmanager
def run_or_fail(run: BackupRun) -> Iterator[None]:
    """Any exception marks the run failed (with its message) and goes on up."""
    try:
        yield
    except BaseException as exc:
        finish(run, ok=False, error=str(exc) or type(exc).__name__)
        raise
