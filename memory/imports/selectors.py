"""Reads of imports, always scoped by the acting user."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from kimberly.api.errors import NotFound
from memory.imports.models import IMPORT_ID_PREFIX, MemoryImport
from users.models import User


def memory_import_get(*, user: User, import_id: str) -> MemoryImport:
    """One of the user's imports; another user's id is 404 like a missing one."""
    try:
        pk = uuid.UUID(import_id.removeprefix(IMPORT_ID_PREFIX))
        if not import_id.startswith(IMPORT_ID_PREFIX):
            raise ValueError
        return MemoryImport.objects.get(pk=pk, user=user)
    except (ValueError, MemoryImport.DoesNotExist):
        raise NotFound(f"No import {import_id[:64]}.") from None


def memory_imports_for(*, user: User) -> QuerySet[MemoryImport]:
    """The user's imports, newest first."""
    return MemoryImport.objects.filter(user=user).order_by("-created_at", "-pk")
