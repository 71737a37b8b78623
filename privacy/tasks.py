"""The privacy app's Celery tasks (Celery autodiscovers `<app>.tasks`); each part
keeps its own tasks module."""

from privacy.erasure.tasks import erase_account
from privacy.exports.tasks import delete_object, expire_exports, export_run_task
from privacy.retention.tasks import enforce_retention

__all__ = [
    "delete_object",
    "enforce_retention",
    "erase_account",
    "expire_exports",
    "export_run_task",
]
