"""Celery tasks of the privacy app (autodiscovered), one module per concept."""

from privacy.erasure.tasks import erase_account  # noqa: F401
