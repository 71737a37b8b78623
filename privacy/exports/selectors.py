"""Reads of a user's exports, always scoped by the user."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from kimberly.api.errors import NotFound
from privacy.exports.models import EXPORT_ID_PREFIX, DataExport
from users.models import User


def export_get(*, user: User, export_id: str) -> DataExport:
    """One of the user's exports; another user's, or a malformed id, is 404."""
    try:
        pk = uuid.UUID(export_id.removeprefix(EXPORT_ID_PREFIX))
        if not export_id.startswith(EXPORT_ID_PREFIX):
            raise ValueError(export_id)
        return DataExport.objects.get(pk=pk, user=user)
    except (ValueError, DataExport.DoesNotExist):
        raise NotFound(f"No export {export_id}.", code="export_not_found") from None


def exports_for(*, user: User) -> QuerySet[DataExport]:
    """The user's exports, newest first."""
    return DataExport.objects.filter(user=user).order_by("-created_at", "-id")
