"""Named compliance checks (GET /v1/compliance/check, ./cli compliance check).

Each check answers one promise of the privacy section for one user, or with no
user for the whole system, as `{name, ok, details}`; details never hold content.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Exists, OuterRef
from django.utils import timezone

from audit.selectors import audit_verify
from kimberly import kms, rls
from memory.models import MemoryItem
from memory.selectors import unsealed_items
from privacy.erasure.models import Deletion
from privacy.retention import enforce, policies
from users.models import Consent


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    details: dict[str, Any]


PROBE_SECONDS = 60.0  # the KMS is asked at most once a minute per process
_probe: dict[str, tuple[float, bool, str, str]] = {}


def _kms_probe() -> tuple[bool, str, str]:
    """(ok, key id, error): a fresh key wrapped and unwrapped under the current
    KEK, remembered a minute (each probe is a billable call to a cloud KMS)."""
    hit = _probe.get("kms")
    if hit and hit[0] > time.monotonic():
        return hit[1], hit[2], hit[3]
    key_id, error = "", ""
    try:
        provider = kms.provider()
        key_id, probe = provider.key_id, secrets.token_bytes(32)
        ok = kms.unwrap(provider.wrap(probe), key_id) == probe
    except Exception as exc:  # noqa: BLE001 - any failure is the finding
        ok, error = False, f"{type(exc).__name__}: {exc}"[:300]
    _probe["kms"] = (time.monotonic() + PROBE_SECONDS, ok, key_id, error)
    return ok, key_id, error


def encryption_configured(user_id: uuid.UUID | None, now: datetime) -> Check:
    """The KMS answers, and every memory that should be sealed is (none waits
    for `./cli memory seal-existing`). The key id and any error are for the
    system view only."""
    unsealed = unsealed_items()
    if user_id is not None:
        unsealed = unsealed.filter(user_id=user_id)
    ok, key_id, error = _kms_probe()
    details: dict[str, Any] = {
        "kms": "ok" if ok else "unavailable",
        "provider": key_id.split(":", 1)[0],
        "seal_all_content": bool(settings.SEAL_ALL_CONTENT),
        "unsealed": unsealed.count(),
    }
    if user_id is None:
        details |= {"key_id": key_id, "error": error}
    return Check("encryption_configured", ok and details["unsealed"] == 0, details)


def sensitive_items_have_consent(user_id: uuid.UUID | None, now: datetime) -> Check:
    """No sensitive memory is visible without a standing sensitive_memory
    consent, and none is kept past the purge grace after a withdrawal."""
    standing = Consent.objects.filter(
        user=OuterRef("user"),
        purpose=Consent.Purpose.SENSITIVE_MEMORY,
        withdrawn_at__isnull=True,
    )
    without = MemoryItem.objects.filter(sensitive=True).exclude(Exists(standing))
    if user_id is not None:
        without = without.filter(user_id=user_id)
    grace = now - timedelta(
        hours=settings.CONSENT_PURGE_GRACE_HOURS + settings.RETENTION_CHECK_SLACK_HOURS
    )
    withdrawn_long_ago = Consent.objects.filter(
        user=OuterRef("user"),
        purpose=Consent.Purpose.SENSITIVE_MEMORY,
        withdrawn_at__lt=grace,
    )
    visible = without.filter(consent=True).count()
    overdue = without.filter(Exists(withdrawn_long_ago)).count()
    return Check(
        "sensitive_items_have_consent",
        visible == 0 and overdue == 0,
        {"visible_without_consent": visible, "kept_past_purge_grace": overdue},
    )


def retention_enforced(user_id: uuid.UUID | None, now: datetime) -> Check:
    """Every data type's enforcement ran lately, and nothing is older than its
    window (plus RETENTION_CHECK_SLACK_HOURS: the pass is nightly)."""
    slack = timedelta(hours=settings.RETENTION_CHECK_SLACK_HOURS)
    runs = enforce.last_runs()
    per_type: dict[str, Any] = {}
    for policy in policies.policies_for(user_id):
        cutoff = policy.cutoff(now) - slack
        late = enforce.records_before(policy.data_type, cutoff, user_id)
        if user_id is None:  # the users whose own window is shorter
            for uid, days in policies.users_with_own_policy(policy.data_type).items():
                if days < policy.system_days:
                    own_cutoff = now - timedelta(days=days) - slack
                    late += enforce.records_before(policy.data_type, own_cutoff, uid)
        run = runs.get(policy.data_type)
        per_type[policy.data_type] = {
            "days": policy.effective_days,
            "records_past_window": late,
            "last_enforced_at": run.finished_at.isoformat() if run else None,
            "ran_recently": bool(run and run.finished_at >= now - slack),
        }
    ok = all(
        t["records_past_window"] == 0 and t["ran_recently"] for t in per_type.values()
    )
    return Check("retention_enforced", ok, {"data_types": per_type})


def audit_chains_intact(user_id: uuid.UUID | None, now: datetime) -> Check:
    report = audit_verify(user_id=user_id)
    details: dict[str, Any] = {"chains": report.chains, "events": report.events}
    if report.first_break:
        details["first_break"] = {
            "user_id": str(report.first_break.user_id or ""),
            "seq": report.first_break.seq,
            "reason": report.first_break.reason,
        }
    return Check("audit_chains_intact", report.first_break is None, details)


def no_erasure_overdue(user_id: uuid.UUID | None, now: datetime) -> Check:
    due = now - timedelta(hours=settings.ERASURE_OVERDUE_HOURS)
    late = Deletion.objects.exclude(status=Deletion.State.SUCCEEDED).filter(
        requested_at__lt=due
    )
    if user_id is not None:
        late = late.filter(user_id=user_id)
    ids = [d.public_id for d in late.order_by("requested_at")[:20]]
    return Check(
        "no_erasure_overdue",
        not ids,
        {"overdue": len(ids), "deletion_ids": ids if user_id is None else []},
    )


CHECKS: list[Callable[[uuid.UUID | None, datetime], Check]] = [
    encryption_configured,
    sensitive_items_have_consent,
    retention_enforced,
    audit_chains_intact,
    no_erasure_overdue,
]


def compliance_check(*, user_id: uuid.UUID | None) -> list[Check]:
    """Run every check for one user, or with None for the whole system (under
    the maintenance scope: every user's rows; callers decide who may)."""
    now = timezone.now()
    if user_id is None:
        with rls.maintenance("compliance: the system-wide checks"):
            return [check(None, now) for check in CHECKS]
    return [check(user_id, now) for check in CHECKS]
