"""Exports: ask for one (cooldown-checked, audited, queued), run the job that
writes the zip, hand out its download link, and delete expired zips."""

from __future__ import annotations

import logging
import math
import tempfile
import uuid
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from audit.services import audit_record
from kimberly import storage
from kimberly.api.errors import BadRequest, RateLimited
from kimberly.api.serializers import iso_time
from kimberly.context import Actor, Context
from privacy.exports.archive import ExportWriter
from privacy.exports.layout import STEPS, Counts
from privacy.exports.models import DataExport
from privacy.exports.schema import FORMAT_VERSION, part_defs
from users.models import User

logger = logging.getLogger(__name__)
State = DataExport.State
# A running export whose worker died is taken over after this long.
STALE_MINUTES = 45


class ExportAbandoned(Exception):
    """The account went (or is going) while its export was being built."""


class ExportCooldown(RateLimited):
    code = "export_cooldown"


def _cooldown_check(user: User) -> None:
    """429 while an export that did not fail is younger than the cooldown."""
    since = timezone.now() - timedelta(hours=settings.EXPORT_COOLDOWN_HOURS)
    last = (
        DataExport.objects.filter(user=user, created_at__gt=since)
        .exclude(status=State.FAILED)
        .order_by("-created_at")
        .first()
    )
    if last is None:
        return
    ready = last.created_at + timedelta(hours=settings.EXPORT_COOLDOWN_HOURS)
    wait = max(1, math.ceil((ready - timezone.now()).total_seconds()))
    raise ExportCooldown(
        f"An export was asked for at {iso_time(last.created_at)}; "
        f"the next one can start in {wait} seconds.",
        retry_after=wait,
        details={"export_id": last.public_id, "available_at": iso_time(ready)},
    )


def export_request(
    *, ctx: Context, user: User, fmt: str, operator: bool = False
) -> DataExport:
    """Queue an export of everything of `user` (429 export_cooldown within
    EXPORT_COOLDOWN_HOURS of the last one that did not fail). The job starts
    after this commits; an operator's (the CLI) has no cooldown and is not sent
    to a worker: the caller runs it."""
    if fmt not in DataExport.Format.values:
        raise BadRequest(f"format must be one of {DataExport.Format.values}.")
    with transaction.atomic():
        # One request at a time per user, so two at once cannot both pass the
        # cooldown (the lock ends with the transaction).
        with connection.cursor() as cur:
            cur.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                [f"privacy.export:{user.pk}"],
            )
        if not operator:
            _cooldown_check(user)
        export = DataExport.objects.create(
            user=user, format=fmt, parts_total=len(STEPS)
        )
        audit_record(
            ctx=ctx,
            action="privacy.export_request",
            user_id=user.pk,
            target_type="export",
            target_id=export.public_id,
            details={"format": fmt},
        )
        if not operator:
            transaction.on_commit(lambda: _send(export.pk), robust=True)
    return export


def _send(export_id: uuid.UUID) -> None:
    from privacy.exports.tasks import export_run_task

    try:
        export_run_task.delay(str(export_id))
    except KombuOperationalError:
        logger.warning("broker unavailable; export %s stays queued", export_id)


def _claim(export_id: str) -> DataExport | None:
    """Take the export to run (queued, or running but stale); None if it is gone,
    finished, or another worker holds it."""
    now = timezone.now()
    stale = now - timedelta(minutes=STALE_MINUTES)
    claimed = (
        DataExport.objects.filter(pk=export_id, status=State.QUEUED)
        | DataExport.objects.filter(
            pk=export_id, status=State.RUNNING, started_at__lt=stale
        )
    ).update(status=State.RUNNING, started_at=now, parts_done=0)
    if not claimed:
        return None
    return DataExport.objects.select_related("user").get(pk=export_id)


def export_run(*, export_id: str) -> DataExport | None:
    """Write the zip of a queued export into the user's prefix in object storage.

    Spooled to a temporary file (nothing is held in memory whole), then stored
    in one upload. On error the export is failed (it then starts no cooldown)
    and the error raised again; storage outages are the task's to retry.
    """
    export = _claim(export_id)
    if export is None:
        return None
    try:
        _build(export)
    except ExportAbandoned:
        logger.info(
            "export %s abandoned: the account is being erased", export.public_id
        )
        return None
    except storage.StorageUnavailable:
        # The task retries: back to queued, so a retry can claim it again.
        DataExport.objects.filter(pk=export.pk).update(status=State.QUEUED)
        raise
    except Exception as exc:
        export_fail(export_id=export.pk, error=f"{type(exc).__name__}: {exc}")
        raise
    return export


def _build(export: DataExport) -> None:
    user = export.user
    key = storage.user_key(user.pk, "exports", f"{export.public_id}.zip")
    counts: Counts = {}
    with tempfile.TemporaryFile(prefix="kimberly-export-") as spool:
        writer = ExportWriter(spool, export.format)
        for done, step in enumerate(STEPS, start=1):
            counts |= step.run(writer, user)
            DataExport.objects.filter(pk=export.pk).update(parts_done=done)
        writer.close(_manifest(export, counts, writer))
        size = spool.tell()
        spool.seek(0)
        _store(export, key, spool, size, counts)


def _store(export: DataExport, key: str, spool: Any, size: int, counts: Counts) -> None:
    """Upload the zip and record it, holding the user's row: an erasure (which
    deactivates the account at once and takes the same lock) either waits and
    then deletes the zip with the rest, or finds it never uploaded."""
    user = export.user
    now = timezone.now()
    export.status, export.object_key, export.size_bytes = State.SUCCEEDED, key, size
    export.counts, export.parts_done, export.finished_at = counts, len(STEPS), now
    export.expires_at = now + timedelta(hours=settings.EXPORT_KEEP_HOURS)
    export.error = ""
    with transaction.atomic():
        live = User.objects.select_for_update().filter(pk=user.pk, is_active=True)
        if not live.exists() or not DataExport.objects.filter(pk=export.pk).exists():
            raise ExportAbandoned("The account is being erased.")
        storage.put_file(key, spool, "application/zip")
        try:
            export.save()
            _audit_ready(export, user, size, counts)
        except BaseException:
            storage.delete(key)  # nothing points at it any more
            raise


def _audit_ready(export: DataExport, user: User, size: int, counts: Counts) -> None:
    audit_record(
        ctx=Context(Actor.system("export")),
        action="privacy.export_ready",
        user_id=user.pk,
        target_type="export",
        target_id=export.public_id,
        details={"format": export.format, "size_bytes": size, "counts": counts},
    )


def _manifest(
    export: DataExport, counts: Counts, writer: ExportWriter
) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "export_id": export.public_id,
        "user_id": str(export.user_id),
        "format": export.format,
        "generated_at": iso_time(timezone.now()),
        "parts": part_defs(),
        "counts": counts,
        "files": [
            {
                "path": f.path,
                "part": f.part,
                "kind": f.kind,
                "bytes": f.bytes,
                "records": f.records,
            }
            for f in writer.files
        ],
    }


def export_fail(*, export_id: uuid.UUID | str, error: str) -> None:
    """Mark an unfinished export failed (audited); a failed export starts no
    cooldown. A gone or finished one is left alone."""
    export = DataExport.objects.filter(pk=export_id).first()
    if export is None or export.status not in (State.QUEUED, State.RUNNING):
        return
    with transaction.atomic():
        DataExport.objects.filter(pk=export.pk).update(
            status=State.FAILED, error=error[:500], finished_at=timezone.now()
        )
        audit_record(
            ctx=Context(Actor.system("export")),
            action="privacy.export_failed",
            user_id=export.user_id,
            target_type="export",
            target_id=export.public_id,
        )


def export_download_url(export: DataExport) -> str | None:
    """A short-lived signed link to a finished export's zip (None otherwise)."""
    if export.status != State.SUCCEEDED or not export.object_key:
        return None
    return storage.signed_url(
        export.object_key,
        filename=f"kimberly-{export.public_id}.zip",
        expires=settings.EXPORT_URL_EXPIRE_SECONDS,
    )


def exports_expire() -> int:
    """Delete the zips of exports past EXPORT_KEEP_HOURS; how many went."""
    done = 0
    due = DataExport.objects.filter(
        status=State.SUCCEEDED, expires_at__lte=timezone.now()
    )
    for export in due.iterator():
        storage.delete(export.object_key)
        DataExport.objects.filter(pk=export.pk, status=State.SUCCEEDED).update(
            status=State.EXPIRED, object_key=""
        )
        done += 1
    return done


def exports_prune(
    *, ctx: Context, cutoff: datetime, user_id: uuid.UUID | None = None
) -> int:
    """The retention policy of exports: the records of exports asked for before
    `cutoff` (of one user, or everyone's) go, and then any zip still stored (at
    once, or by a retried task while object storage is down); one still queued
    or running is left to finish. Audited; returns how many."""
    done = 0
    due = DataExport.objects.filter(created_at__lt=cutoff).exclude(
        status__in=[State.QUEUED, State.RUNNING]
    )
    if user_id is not None:
        due = due.filter(user_id=user_id)
    for export in due.order_by("pk").iterator():
        with transaction.atomic():
            n, _ = DataExport.objects.filter(pk=export.pk).delete()
            if not n:
                continue
            audit_record(
                ctx=ctx,
                action="export.retention",
                user_id=export.user_id,
                target_type="export",
                target_id=export.public_id,
            )
            if export.object_key:
                transaction.on_commit(
                    partial(_delete_object, export.object_key), robust=True
                )
        done += n
    return done


def _delete_object(key: str) -> None:
    try:
        storage.delete(key)
    except storage.StorageUnavailable:
        from privacy.exports.tasks import delete_object

        delete_object.delay(key)
