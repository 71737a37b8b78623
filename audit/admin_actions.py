"""Every change made in the Django admin to a user's data is an audit event in
that user's chain (`admin.add`, `admin.change`, `admin.delete`), as the admin.

The admin writes a LogEntry for each; this turns it into an audit event in the
same transaction. The owner is the object's `user_id` (or the user itself);
an object that belongs to no user (a global switch, a beat schedule) goes to
the global chain.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry

from audit.services import audit_record
from kimberly.context import Actor, Context

ACTIONS = {ADDITION: "admin.add", CHANGE: "admin.change", DELETION: "admin.delete"}


def _owner(entry: LogEntry) -> Any:
    content_type: Any = entry.content_type
    if content_type is None:
        return None
    model = content_type.model_class()
    if model is None:
        return None
    obj = model._base_manager.filter(pk=entry.object_id).first()
    if obj is None:
        return None
    if model._meta.label_lower == "users.user":
        return obj.pk
    return getattr(obj, "user_id", None)


def audit_admin_action(
    sender: Any, instance: LogEntry, created: bool, **_: Any
) -> None:
    if not created or instance.action_flag not in ACTIONS:
        return
    content_type: Any = instance.content_type
    label = content_type.model if content_type is not None else ""
    audit_record(
        ctx=Context(Actor("admin", str(instance.user_id))),
        action=ACTIONS[instance.action_flag],
        user_id=_owner(instance),
        target_type=label,
        target_id=str(instance.object_id or "")[:64],
        details={"fields": _changed_fields(instance)},
    )


def _changed_fields(entry: LogEntry) -> list[str]:
    """The labels of the changed fields, as the admin logs them (never values)."""
    try:
        parsed = json.loads(entry.change_message or "[]")
    except ValueError:
        return []
    out: list[str] = []
    for part in parsed if isinstance(parsed, list) else []:
        out += list(part.get("changed", {}).get("fields", []))
    return out[:50]
