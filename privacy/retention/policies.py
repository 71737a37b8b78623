"""Retention policies: the system's defaults, a user's shorter values, and the
effective window of each data type (services and selectors in one small module).

The system value of a type is the admin's row (user empty) when there is one,
else the setting (RETENTION_DEFAULT_DAYS, or the older RETRIEVAL_RECORDS_DAYS and
MEDITATION_RECORDS_DAYS for the two types that had one). A user's value may only
be shorter; the effective window is the smaller of the two, so an admin who
lowers a default lowers it for everyone.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction

from audit.services import audit_record
from kimberly import rls
from kimberly.api.errors import ApplicationError, BadRequest
from kimberly.context import Context
from privacy.retention.models import DataType, RetentionPolicy
from users.models import User

_OLDER_SETTINGS = {
    DataType.RETRIEVAL_RECORDS: "RETRIEVAL_RECORDS_DAYS",
    DataType.TELEMETRY: "MEDITATION_RECORDS_DAYS",
}

DESCRIPTIONS = {
    DataType.CHAT_MESSAGES: "chat messages (a conversation left empty goes whole, "
    "with its transcript)",
    DataType.SHORT_TERM_MEMORIES: "short-term memories, by when they were made "
    "(protected ones are kept)",
    DataType.RETRIEVAL_RECORDS: "which memories each query and chat reply read",
    DataType.EXPORTS: "your data exports (the record and any zip left)",
    DataType.AUDIT_EVENTS: "audit events (the chain is anchored where it is cut, "
    "so it still verifies)",
    DataType.TELEMETRY: "usage records kept about your memories: meditation's "
    "per-memory score records (nothing is sent off the machine)",
}


SCOPES = ["user", "system"]  # whose policies, whose checks
MAX_DAYS = 36_500  # a hundred years; past that a date would overflow


class RetentionTooLong(ApplicationError):
    code = "retention_too_long"
    status = 400


class RetentionTooShort(ApplicationError):
    code = "retention_too_short"
    status = 400


def min_days(data_type: str, *, system: bool) -> int:
    """The shortest value allowed: a user may not cut their audit trail (their
    proof of consent among it) below RETENTION_AUDIT_EVENTS_MIN_DAYS, and no
    export record may go before its cooldown ends (the cooldown reads it)."""
    if data_type == DataType.EXPORTS:
        return max(1, math.ceil(settings.EXPORT_COOLDOWN_HOURS / 24))
    if data_type == DataType.AUDIT_EVENTS and not system:
        return int(settings.RETENTION_AUDIT_EVENTS_MIN_DAYS)
    return 1


class AdminOnly(ApplicationError):
    code = "admin_only"
    status = 403


def _setting_days(data_type: str) -> int:
    older = _OLDER_SETTINGS.get(DataType(data_type))
    if older:
        return int(getattr(settings, older))
    return int(settings.RETENTION_DEFAULT_DAYS[data_type])


def system_days() -> dict[str, int]:
    """The system window of every data type (admin rows over the settings)."""
    days = {t.value: _setting_days(t.value) for t in DataType}
    for row in RetentionPolicy.objects.filter(user__isnull=True):
        days[row.data_type] = row.days
    return days


def user_days(user_id: uuid.UUID) -> dict[str, int]:
    """A user's own values (types without one are absent)."""
    rows = RetentionPolicy.objects.filter(user_id=user_id)
    return {row.data_type: row.days for row in rows}


def users_with_own_policy(data_type: str) -> dict[uuid.UUID, int]:
    """Every user with their own value for `data_type`: {user id: days}."""
    rows = RetentionPolicy.objects.filter(
        data_type=data_type, user__isnull=False
    ).values_list("user_id", "days")
    return dict(rows)


@dataclass(frozen=True)
class Policy:
    data_type: str
    description: str
    system_days: int
    user_days: int | None
    effective_days: int

    def cutoff(self, now: datetime) -> datetime:
        return now - timedelta(days=self.effective_days)


def policies_for(user_id: uuid.UUID | None) -> list[Policy]:
    """Every data type's policy for a user (None: the system's alone)."""
    system = system_days()
    own = user_days(user_id) if user_id is not None else {}
    return [
        Policy(
            t.value,
            DESCRIPTIONS[t],
            system[t.value],
            own.get(t.value),
            min(system[t.value], own.get(t.value, system[t.value])),
        )
        for t in DataType
    ]


def _check_days(data_type: str, days: Any) -> None:
    if data_type not in DataType.values:
        raise BadRequest(
            f"Unknown data type {data_type!r}.",
            code="unknown_data_type",
            details={"data_types": list(DataType.values)},
        )
    if days is not None and (
        isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS
    ):
        raise BadRequest(
            f"{data_type}: days must be a whole number from 1 to {MAX_DAYS}, or null.",
            code="invalid_retention_days",
            details={"data_type": data_type},
        )


@transaction.atomic
def policies_set(
    *, ctx: Context, user: User, changes: dict[str, int | None], system: bool = False
) -> list[Policy]:
    """Set (or, with None, clear) values per data type, all or nothing: the
    user's own, or with `system` the defaults (superusers only). Audited."""
    if system and not user.is_superuser:
        raise AdminOnly("Only an administrator may change the system defaults.")
    if system:  # rows of no user and the global audit chain
        with rls.maintenance("retention: a superuser sets the system defaults"):
            return _policies_set(ctx=ctx, user=user, changes=changes, system=True)
    return _policies_set(ctx=ctx, user=user, changes=changes, system=False)


def _policies_set(
    *, ctx: Context, user: User, changes: dict[str, int | None], system: bool
) -> list[Policy]:
    for data_type, days in changes.items():
        _check_days(data_type, days)
        floor = min_days(data_type, system=system)
        if days is not None and days < floor:
            raise RetentionTooShort(
                f"{data_type} is kept at least {floor} days.",
                details={"data_type": data_type, "min_days": floor},
            )
    owner = None if system else user
    if not system:  # a user may only shorten what the system keeps
        limits = system_days()
        for data_type, days in changes.items():
            if days is not None and days > limits[data_type]:
                raise RetentionTooLong(
                    f"{data_type}: the system keeps it {limits[data_type]} days; "
                    "your value may only be shorter.",
                    details={"data_type": data_type, "max_days": limits[data_type]},
                )
    for data_type, days in changes.items():
        rows = RetentionPolicy.objects.filter(user=owner, data_type=data_type)
        if days is None:
            rows.delete()
        else:
            RetentionPolicy.objects.update_or_create(
                user=owner,
                data_type=data_type,
                defaults={"days": days, "updated_by": ctx.actor.id[:64]},
            )
    audit_record(
        ctx=ctx,
        action="retention.system_set" if system else "retention.set",
        user_id=None if system else user.pk,
        target_type="retention",
        details={"changes": changes},
    )
    return policies_for(None if system else user.pk)
