"""The privacy app's Celery tasks (Celery autodiscovers `<app>.tasks`); each part
keeps its own tasks module."""

from privacy.exports.tasks import expire_exports, export_run_task

__all__ = ["expire_exports", "export_run_task"]
