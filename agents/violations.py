"""Recording a policy violation: what an agent (or a task for it) tried that the
deny list or a capability policy refuses. One audit event in the user's chain,
`agent.sandbox_violation`, and one count in
kimberly_agent_sandbox_violations_total{agent}; the caller then refuses."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from agents import metrics
from audit.services import audit_record
from kimberly.context import Context
from users.models import User


def record_violation(
    *, ctx: Context, user: User, agent: str, rule: str, details: dict[str, Any]
) -> None:
    with transaction.atomic():
        audit_record(
            ctx=ctx,
            action="agent.sandbox_violation",
            user_id=user.pk,
            target_type="agent",
            target_id=agent,
            details={"rule": rule, **details},
        )
    metrics.sandbox_violations.labels(agent=agent).inc()
