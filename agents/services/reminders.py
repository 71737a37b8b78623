"""Reminders: cancel one; deliver the due ones (beat) into short-term memory and
to the user's webhook, signed, with retries (agents.webhooks)."""

from __future__ import annotations

import logging
import uuid

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agents import webhooks
from agents.models import Reminder
from agents.registry import AGENT_TYPES
from audit.services import audit_record
from kimberly.api.errors import ApplicationError, Conflict
from kimberly.api.serializers import iso_time
from kimberly.context import Actor, Context
from memory import gateway

logger = logging.getLogger(__name__)
_TYPE = AGENT_TYPES["reminder"]
GRANT = gateway.Grant(frozenset(_TYPE.permissions), _TYPE.tiers)
BATCH = 200


def reminder_cancel(*, ctx: Context, reminder: Reminder) -> Reminder:
    with transaction.atomic():
        row = Reminder.objects.select_for_update().get(pk=reminder.pk)
        if row.status != Reminder.Status.PENDING:
            raise Conflict(
                f"The reminder is {row.status}; only a pending one can be cancelled.",
                code="reminder_not_pending",
                details={"status": row.status},
            )
        row.status = Reminder.Status.CANCELLED
        row.save(update_fields=["status"])
        audit_record(
            ctx=ctx,
            action="agent.reminder_cancel",
            user_id=row.user_id,
            target_type="reminder",
            target_id=row.public_id,
        )
    return row


def _ctx(reminder: Reminder) -> Context:
    ref = f"tsk_{reminder.task_id}" if reminder.task_id else reminder.public_id
    return Context(Actor("agent", f"reminder:{ref}"))


def deliver_due() -> int:
    """Deliver every pending reminder that is due; each in its own transaction
    (the memory write and the status change together), so none is delivered
    twice and a failure leaves the others alone."""
    delivered = 0
    while True:
        ids = list(
            Reminder.objects.filter(
                status=Reminder.Status.PENDING, due_at__lte=timezone.now()
            )
            .order_by("due_at")
            .values_list("pk", flat=True)[:BATCH]
        )
        for pk in ids:
            delivered += _deliver_one(pk)
        if len(ids) < BATCH:
            return delivered


def _deliver_one(pk: uuid.UUID) -> int:
    with transaction.atomic():
        rem = (
            Reminder.objects.select_for_update(skip_locked=True)
            .select_related("user")
            .filter(pk=pk, status=Reminder.Status.PENDING)
            .first()
        )
        if rem is None:
            return 0
        try:
            with transaction.atomic():
                item = gateway.remember(
                    ctx=_ctx(rem),
                    user=rem.user,
                    content=f"Reminder: {rem.what}",
                    tags=["reminder"],
                    grant=GRANT,
                    source=gateway.Source.AGENT,
                )
        except ApplicationError as exc:
            rem.status, rem.error = Reminder.Status.FAILED, exc.message[:500]
            rem.save(update_fields=["status", "error"])
            logger.warning("reminder %s not delivered: %s", rem.public_id, exc.code)
            return 0
        rem.status, rem.delivered_at, rem.memory_id = (
            Reminder.Status.DELIVERED,
            timezone.now(),
            item.pk,
        )
        if getattr(rem.user, "webhook_url", ""):
            rem.webhook = Reminder.Webhook.PENDING
            transaction.on_commit(lambda: _send_webhook(rem.pk))
        rem.save(update_fields=["status", "delivered_at", "memory_id", "webhook"])
    return 1


def _send_webhook(pk: uuid.UUID, countdown: int = 0) -> None:
    from agents.tasks import deliver_reminder_webhook

    deliver_reminder_webhook.apply_async(args=(str(pk),), countdown=countdown)


def webhook_attempt(*, reminder_id: str) -> str:
    """One attempt at the user's webhook; schedules the next with backoff, up to
    AGENT_WEBHOOK_MAX_ATTEMPTS. Returns the reminder's webhook state."""

    with transaction.atomic():
        rem = (
            Reminder.objects.select_for_update()
            .select_related("user")
            .filter(pk=uuid.UUID(reminder_id), webhook=Reminder.Webhook.PENDING)
            .first()
        )
        if rem is None:
            return "skipped"
        user = rem.user
        payload = {
            "type": "reminder.due",
            "reminder_id": rem.public_id,
            "what": rem.what,
            "due_at": iso_time(rem.due_at),
            "memory_id": f"mem_{rem.memory_id}" if rem.memory_id else None,
        }
        rem.webhook_attempts += 1
        try:
            outcome = webhooks.deliver(
                user.webhook_url,
                user.webhook_secret,
                payload,
                allow_private=settings.AGENT_WEBHOOK_ALLOW_PRIVATE,
                timeout=settings.AGENT_WEBHOOK_TIMEOUT_SECONDS,
            )
        except webhooks.WebhookRefused as exc:
            rem.webhook, rem.webhook_error = Reminder.Webhook.REFUSED, exc.message[:500]
        else:
            if outcome.ok:
                rem.webhook, rem.webhook_error = Reminder.Webhook.DELIVERED, ""
            else:
                rem.webhook_error = outcome.error[:500]
                _retry_or_fail(rem, retryable=outcome.retryable)
        rem.save(update_fields=["webhook", "webhook_attempts", "webhook_error"])
    return rem.webhook


def _retry_or_fail(rem: Reminder, *, retryable: bool) -> None:
    attempts = settings.AGENT_WEBHOOK_MAX_ATTEMPTS
    if not retryable or rem.webhook_attempts >= attempts:
        rem.webhook = Reminder.Webhook.FAILED
        return
    delays = webhooks.retry_delays(attempts, settings.AGENT_WEBHOOK_RETRY_BASE_SECONDS)
    delay = delays[min(rem.webhook_attempts - 1, len(delays) - 1)]
    pk = rem.pk
    transaction.on_commit(lambda: _send_webhook(pk, delay))
