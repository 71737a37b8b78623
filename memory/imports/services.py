"""Starting an import (in the request, or as a job) and running the job.

Every record of the file is checked before anything is stored (a 400 names the
first bad one). Up to IMPORT_SYNC_MAX_RECORDS records then run in the request
as one transaction: all or nothing, so an import that would pass a tier's hard
limit is a 429 and stores nothing. Larger files are kept in object storage and
run by `memory.tasks.import_run`, IMPORT_BATCH_SIZE records per transaction
(with the job's progress): records past the quota are refused with their
reason and the rest are imported. Re-importing is harmless: a record whose
external_id the user already has is counted as skipped_duplicate.

A job is held by the worker whose claim token is on its row: every progress and
finish UPDATE names the token, so a worker whose job was claimed again (its
heartbeat went stale) writes nothing more and stops. memory/imports/upkeep.py
(periodic) sends again the jobs no worker holds and deletes the files finished
jobs could not delete.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from audit.services import audit_record
from kimberly import storage
from kimberly.api.errors import ApplicationError, PayloadTooLarge, check_upload_size
from kimberly.context import Actor, Context
from memory import metrics
from memory.imports.formats import ImportRecord, ParsedImport, parse_import
from memory.imports.models import MAX_REFUSALS, MemoryImport
from memory.quotas import QuotaExceeded, quota_lock
from memory.services.create_many import ManyResult, NewMemory, memory_create_many
from users.models import User

logger = logging.getLogger(__name__)

State = MemoryImport.State
# A running job whose last batch is older than this is taken to be dead (its
# worker was killed) and may be claimed again; a batch takes about a second.
STALE_SECONDS = 120


def check_size(size: int) -> None:
    """413 for an import file over IMPORT_MAX_BYTES."""
    check_upload_size(size, settings.IMPORT_MAX_BYTES, "The import file")


# Room for the multipart boundaries and the small fields around the file.
MULTIPART_OVERHEAD = 64 * 1024


def import_body_check(content_length: str | None) -> None:
    """413 before reading a request body (POST /v1/memory/import, the memory
    screen's import form) that cannot hold a file within IMPORT_MAX_BYTES:
    nothing is spooled to disk."""
    try:
        length = int(content_length or 0)
    except ValueError:
        return  # Django's parser refuses it
    if length > settings.IMPORT_MAX_BYTES + MULTIPART_OVERHEAD:
        raise PayloadTooLarge(
            "The import file is larger than this server accepts.",
            details={"size_bytes": length, "max_bytes": settings.IMPORT_MAX_BYTES},
        )


def memory_import_start(
    *,
    ctx: Context,
    user: User,
    tier: str,
    fmt: str | None = None,
    raw: bytes | None = None,
    data: Any = None,
) -> MemoryImport:
    """Import a file (`raw`) or parsed JSON (`data`): done now, or queued as a job."""
    if raw is not None:
        check_size(len(raw))
    try:
        parsed = parse_import(raw=raw, data=data, fmt=fmt, tier=tier)
    except ApplicationError:
        metrics.imports.labels(format=fmt or "unknown", result="invalid").inc()
        raise
    if len(parsed.records) <= settings.IMPORT_SYNC_MAX_RECORDS:
        return _run_now(ctx, user, parsed, tier, len(raw or b""))
    body = raw if raw is not None else _serialized(data, parsed.format)
    return _queue(user, parsed, tier, body)


def _new_import(
    user: User, parsed: ParsedImport, tier: str, size: int, status: str
) -> MemoryImport:
    return MemoryImport(
        id=uuid.uuid4(),
        user=user,
        format=parsed.format,
        tier=tier,
        status=status,
        total=len(parsed.records),
        skipped=parsed.skipped,
        file_bytes=size,
    )


def _run_now(
    ctx: Context, user: User, parsed: ParsedImport, tier: str, size: int
) -> MemoryImport:
    imp = _new_import(user, parsed, tier, size, State.RUNNING)
    imp.started_at = timezone.now()
    imp.claim = uuid.uuid4()
    try:
        with transaction.atomic():
            imp.save(force_insert=True)
            # Every quota row the batches will lock, first and in tier order:
            # the batches share this transaction, which holds each lock they
            # take (a tier's quota row, the user's audit chain lock) to commit;
            # a later batch's tier taken after those could deadlock with
            # another import of the same user.
            quota_lock(user_id=user.pk, tiers={r.tier for r in parsed.records})
            for batch in _batches(parsed.records, 0):
                _apply(imp, batch, _create(ctx, user, imp, batch, all_or_nothing=True))
            _finish(ctx, imp, State.SUCCEEDED)
    except QuotaExceeded:
        metrics.imports.labels(format=imp.format, result="quota_exceeded").inc()
        raise
    _count_items(imp)
    return imp


def _queue(user: User, parsed: ParsedImport, tier: str, body: bytes) -> MemoryImport:
    imp = _new_import(user, parsed, tier, len(body), State.QUEUED)
    ext = "jsonl" if parsed.format == MemoryImport.Format.KIMBERLY else "json"
    imp.file_key = storage.user_key(user.pk, "imports", f"{imp.id}.{ext}")
    try:
        storage.put_bytes(imp.file_key, body, "application/json")
    except storage.StorageUnavailable as exc:
        raise storage.StorageUnavailable(
            "The file store is unavailable; nothing was imported. Try again later."
        ) from exc
    try:
        with transaction.atomic():
            imp.save(force_insert=True)
            transaction.on_commit(lambda: _send(imp.pk))
    except BaseException:
        storage.delete(imp.file_key)
        raise
    metrics.imports.labels(format=imp.format, result="queued").inc()
    return imp


def _send(import_id: uuid.UUID) -> None:
    from memory.tasks import import_run

    try:
        import_run.delay(str(import_id))
    except KombuOperationalError:
        # After commit: the import is accepted; it stays queued and says so.
        logger.warning("broker unavailable; import %s stays queued", import_id)


def _serialized(data: Any, fmt: str) -> bytes:
    if fmt == MemoryImport.Format.KIMBERLY and isinstance(data, list):
        return "\n".join(json.dumps(line) for line in data).encode()
    if isinstance(data, str):
        return data.encode("utf-8", "surrogatepass")
    return json.dumps(data).encode()


def _batches(records: list[ImportRecord], start: int) -> Iterator[list[ImportRecord]]:
    size = max(1, settings.IMPORT_BATCH_SIZE)
    for n in range(start, len(records), size):
        yield records[n : n + size]


def _create(
    ctx: Context,
    user: User,
    imp: MemoryImport,
    batch: list[ImportRecord],
    *,
    all_or_nothing: bool,
) -> ManyResult:
    return memory_create_many(
        ctx=ctx,
        user=user,
        memories=[
            NewMemory(r.tier, r.content, r.metadata, r.created_at, r.external_id)
            for r in batch
        ],
        all_or_nothing=all_or_nothing,
        audit_details={"source": "import", "import_id": imp.public_id},
    )


def _apply(imp: MemoryImport, batch: list[ImportRecord], result: ManyResult) -> None:
    """Count a batch into the import (saved with the batch, in its transaction)."""
    imp.processed += len(batch)
    imp.imported += len(result.inserted)
    imp.skipped_duplicate += len(result.duplicates)
    imp.refused += len(result.refused)
    room = MAX_REFUSALS - len(imp.refusals)
    imp.refusals = imp.refusals + [
        {
            "record": batch[pos].index,
            "external_id": batch[pos].external_id,
            "reason": why,
        }
        for pos, why in result.refused[: max(0, room)]
    ]
    imp.heartbeat_at = timezone.now()
    _update(
        imp,
        processed=imp.processed,
        imported=imp.imported,
        skipped_duplicate=imp.skipped_duplicate,
        refused=imp.refused,
        refusals=imp.refusals,
        heartbeat_at=imp.heartbeat_at,
    )


class ImportLost(Exception):
    """Another worker claimed this job (this one's heartbeat went stale): stop."""


def _update(imp: MemoryImport, **values: Any) -> None:
    """UPDATE the job's row while this worker holds it, else raise ImportLost."""
    held = MemoryImport.objects.filter(pk=imp.pk, claim=imp.claim, status=State.RUNNING)
    if not held.update(**values):
        raise ImportLost(imp.public_id)


def _finish(ctx: Context, imp: MemoryImport, status: str, error: str = "") -> None:
    """Mark the job done and audit it; the file (file_key) is deleted after commit."""
    imp.status = status
    imp.error = error
    imp.finished_at = timezone.now()
    _update(imp, status=status, error=error, finished_at=imp.finished_at)
    audit_record(
        ctx=ctx,
        action="memory.import",
        user_id=imp.user_id,
        target_type="import",
        target_id=imp.public_id,
        details={
            "format": imp.format,
            "status": status,
            "total": imp.total,
            "imported": imp.imported,
            "skipped_duplicate": imp.skipped_duplicate,
            "refused": imp.refused,
        },
    )


def _count_items(imp: MemoryImport) -> None:
    metrics.imports.labels(format=imp.format, result=imp.status).inc()
    for result in ("imported", "skipped_duplicate", "refused"):
        metrics.import_items.labels(format=imp.format, result=result).inc(
            getattr(imp, result)
        )


# ------------------------------------------------------------------- the job


def _claim(import_id: uuid.UUID) -> uuid.UUID | None:
    """Take the job (queued, or running with a dead worker) with a new claim token:
    one conditional UPDATE. Returns the token, None when the job is not free."""
    stale = timezone.now() - timedelta(seconds=STALE_SECONDS)
    now = timezone.now()
    token = uuid.uuid4()
    claimed = (
        MemoryImport.objects.filter(pk=import_id)
        .filter(
            Q(status=State.QUEUED) | Q(status=State.RUNNING, heartbeat_at__lt=stale)
        )
        .update(
            status=State.RUNNING,
            claim=token,
            heartbeat_at=now,
            started_at=Coalesce("started_at", Value(now)),
        )
    )
    return token if claimed else None


class ImportBusy(Exception):
    """Another worker runs this import right now (retry later, then it is done)."""


def memory_import_run(*, import_id: str, budget_seconds: float) -> str:
    """Run a queued import from where it stands; returns what happened.

    Safe to run twice: the claim lets one worker in; progress commits with each
    batch, so a job handed over (after `budget_seconds`, below the task's time
    limit) or redelivered after a crash resumes at `processed`. A worker whose
    job was claimed again meanwhile stops at its next write ("lost"); the
    batch it was writing rolls back.
    """
    pk = uuid.UUID(import_id)
    token = _claim(pk)
    if token is None:
        status = (
            MemoryImport.objects.filter(pk=pk).values_list("status", flat=True).first()
        )
        if status == State.RUNNING:
            raise ImportBusy(import_id)
        return "gone" if status is None else "done"
    imp = MemoryImport.objects.select_related("user").get(pk=pk)
    imp.claim = token  # ours, whatever claim the row shows by now
    ctx = Context(Actor("user", str(imp.user_id)))
    try:
        return _run_job(ctx, imp, time.monotonic() + budget_seconds)
    except ImportLost:
        logger.warning("import %s was claimed by another worker", imp.public_id)
        return "lost"
    except storage.StorageUnavailable:
        # Transient: give the claim back (progress is kept) for the retry.
        MemoryImport.objects.filter(pk=pk, claim=token, status=State.RUNNING).update(
            status=State.QUEUED
        )
        raise
    except Exception as exc:
        logger.exception("import %s failed", imp.public_id)
        with contextlib.suppress(ImportLost):
            _fail(
                ctx,
                imp,
                f"internal error ({type(exc).__name__}); nothing more was imported",
            )
        raise


def _run_job(ctx: Context, imp: MemoryImport, deadline: float) -> str:
    try:
        raw = storage.read_bytes(imp.file_key)
        parsed = parse_import(raw=raw, data=None, fmt=imp.format, tier=imp.tier)
    except storage.StorageUnavailable:
        # An ApplicationError too, but transient: memory_import_run gives the
        # job back (the file and progress kept) and the task retries.
        raise
    except (storage.ObjectNotFound, ApplicationError) as exc:
        gone = isinstance(exc, storage.ObjectNotFound)
        _fail(ctx, imp, "the uploaded file is gone" if gone else exc.message)
        return "failed"
    for batch in _batches(parsed.records, imp.processed):
        if imp.processed > 0 and time.monotonic() > deadline:
            # Within the task's time limit: a fresh task continues at `processed`.
            _update(imp, status=State.QUEUED)
            _send(imp.pk)
            return "handed_over"
        with transaction.atomic():
            _apply(imp, batch, _create(ctx, imp.user, imp, batch, all_or_nothing=False))
    with transaction.atomic():
        _finish(ctx, imp, State.SUCCEEDED)
    _delete_file(imp)
    _count_items(imp)
    return "succeeded"


def _fail(ctx: Context, imp: MemoryImport, error: str) -> None:
    with transaction.atomic():
        _finish(ctx, imp, State.FAILED, error[:1000])
    _delete_file(imp)
    _count_items(imp)


def _delete_file(imp: MemoryImport) -> bool:
    """Delete a finished job's file, then forget its key (in that order: a key is
    cleared only once its object is gone). False while object storage is down:
    the key stays and upkeep.memory_import_files_cleanup deletes it later."""
    key = imp.file_key
    if not key:
        return True
    try:
        storage.delete(key)
    except storage.StorageUnavailable:
        logger.warning("import %s: its file stays until the next cleanup", imp.pk)
        return False
    MemoryImport.objects.filter(pk=imp.pk, file_key=key).update(file_key="")
    imp.file_key = ""
    return True
