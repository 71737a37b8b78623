"""Reading backup runs: the list of backups, and the last runs the gauges show."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Max, OuterRef, Subquery

from backups.models import BackupRun


@dataclass(frozen=True)
class BackupEntry:
    key: str
    created_at: datetime
    size_bytes: int | None
    sha256: str
    verified_at: datetime | None


def backup_list(*, stored: dict[str, int] | None = None) -> list[BackupEntry]:
    """Successful creates, newest first, with when each last passed verify.
    `stored` (key -> size, from the bucket): only the backups still there."""
    verified = (
        BackupRun.objects.filter(
            kind=BackupRun.Kind.VERIFY,
            status=BackupRun.Status.SUCCEEDED,
            key=OuterRef("key"),
        )
        .values("key")
        .annotate(at=Max("finished_at"))
        .values("at")
    )
    runs = (
        BackupRun.objects.filter(
            kind=BackupRun.Kind.CREATE, status=BackupRun.Status.SUCCEEDED
        )
        .annotate(verified_at=Subquery(verified))
        .order_by("-started_at", "-pk")
    )
    return [
        BackupEntry(r.key, r.started_at, r.size_bytes, r.sha256, r.verified_at)
        for r in runs
        if stored is None or r.key in stored
    ]


@dataclass(frozen=True)
class LastRuns:
    success_at: float
    failure_at: float
    size_bytes: int
    verify_success_at: float


def _last(kind: str, status: str) -> BackupRun | None:
    return (
        BackupRun.objects.filter(kind=kind, status=status, finished_at__isnull=False)
        .order_by("-finished_at")
        .first()
    )


def backup_last_runs() -> LastRuns:
    """The newest finished create (succeeded, failed) and verify (succeeded); 0: none."""
    ok = _last(BackupRun.Kind.CREATE, BackupRun.Status.SUCCEEDED)
    failed = _last(BackupRun.Kind.CREATE, BackupRun.Status.FAILED)
    verified = _last(BackupRun.Kind.VERIFY, BackupRun.Status.SUCCEEDED)

    def ts(run: BackupRun | None) -> float:
        return run.finished_at.timestamp() if run and run.finished_at else 0.0

    return LastRuns(
        success_at=ts(ok),
        failure_at=ts(failed),
        size_bytes=(ok.size_bytes or 0) if ok else 0,
        verify_success_at=ts(verified),
    )
