"""Admin building blocks shared by the apps (Django only; no app imported)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest


class ReadOnlyAdminMixin:
    """An admin page that shows rows and never adds or edits them: they are made
    and changed through the services, which keep quota, history and audit."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
