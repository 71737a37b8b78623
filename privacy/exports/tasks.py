"""Background jobs of exports: thin wrappers over privacy.exports.services."""

from __future__ import annotations

from celery import Task, shared_task

from kimberly import rls, storage
from privacy.exports import services

MAX_RETRIES = 8


@shared_task(
    name="privacy.tasks.export_run", bind=True, time_limit=1800, soft_time_limit=1740
)
@rls.task_scope(owner=rls.owner_of("privacy.DataExport", "export_id"))
def export_run_task(self: Task, export_id: str) -> str | None:
    """Write the zip of a queued export; a gone, finished or held one is left
    alone. While object storage is down it waits and tries again."""
    try:
        export = services.export_run(export_id=export_id)
    except storage.StorageUnavailable as exc:
        if self.request.retries >= MAX_RETRIES:
            services.export_fail(export_id=export_id, error=f"storage: {exc}")
            raise
        countdown = min(300, 10 * 2**self.request.retries)
        raise self.retry(exc=exc, countdown=countdown, max_retries=MAX_RETRIES) from exc
    return export.public_id if export else None


@shared_task(
    name="privacy.tasks.expire_exports",
    autoretry_for=(storage.StorageUnavailable,),
    retry_backoff=30,
    max_retries=3,
    time_limit=300,
    soft_time_limit=270,
)
@rls.task_scope(maintenance="sweep: expired exports of every user")
def expire_exports() -> int:
    """Periodic: delete the zips of exports past EXPORT_KEEP_HOURS."""
    return services.exports_expire()


@shared_task(
    name="privacy.tasks.delete_object",
    autoretry_for=(storage.StorageUnavailable,),
    retry_backoff=30,
    retry_backoff_max=600,
    max_retries=MAX_RETRIES,
    time_limit=120,
    soft_time_limit=100,
)
@rls.task_scope(no_rows="an object in storage; its row is gone")
def delete_object(key: str) -> None:
    """Delete one object of an export that retention removed, once storage is up."""
    storage.delete(key)
