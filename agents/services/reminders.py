"""Reminders: cancel one; deliver the due ones (beat) into short-term memory and
to the user's webhook, signed, with retries (agents.webhooks)."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from agents import webhooks
from agents.models import Reminder
from agents.registry import AGENT_TYPES
from audit.services import audit_record
from kimberly import rls
from kimberly.api.errors import ApplicationError, Conflict
from kimberly.api.serializers import iso_time
from kimberly.context import Actor, Context
from memory import gateway

logger = logging.getLogger(__name__)
_TYPE = AGENT_TYPES["reminder"]
GRANT = gateway.Grant(frozenset(_TYPE.permissions), _TYPE.tiers)
SCAN_LIMIT = 1000  # reminders delivered per scan; the next scan takes the rest
# A webhook attempt not made this long after it was due is sent again (its
# message was lost); longer than one attempt can take.
LOST_AFTER_SECONDS = 120


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
    """Deliver the pending reminders that are due (up to SCAN_LIMIT per scan,
    oldest first), each in its own transaction (the memory write and the status
    change together), so none is delivered twice and one that fails leaves the
    others alone; then send again the webhook attempts whose message was lost."""
    ids = list(
        Reminder.objects.filter(
            status=Reminder.Status.PENDING, due_at__lte=timezone.now()
        )
        .order_by("due_at")
        .values_list("pk", flat=True)[:SCAN_LIMIT]
    )
    delivered = 0
    for pk in ids:
        try:
            delivered += _deliver_one(pk)
        except Exception:
            logger.exception("reminder %s: delivery failed", pk)
    _resend_lost_webhooks()
    return delivered


def _deliver_one(pk: uuid.UUID) -> int:
    with transaction.atomic():
        rem = (
            Reminder.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("user")
            .filter(pk=pk, status=Reminder.Status.PENDING)
            .first()
        )
        if rem is None:
            return 0
        try:
            # found by a set-wise scan; the write itself acts as its user only
            with transaction.atomic(), rls.acting_user(rem.user_id):
                item = gateway.remember(
                    ctx=_ctx(rem),
                    user=rem.user,
                    content=f"Reminder: {rem.what}",
                    tags=["reminder"],
                    grant=GRANT,
                    source=gateway.Source.AGENT,
                )
        except ApplicationError as exc:  # e.g. the short-term quota is full
            rem.status, rem.error = Reminder.Status.FAILED, exc.message[:500]
            rem.save(update_fields=["status", "error"])
            logger.warning("reminder %s not delivered: %s", rem.public_id, exc.code)
            return 0
        rem.status, rem.delivered_at, rem.memory_id = (
            Reminder.Status.DELIVERED,
            timezone.now(),
            item.pk,
        )
        fields = ["status", "delivered_at", "memory_id"]
        if rem.user.webhook_url:
            _schedule(rem, delay=0)
            fields += ["webhook", "webhook_next_at"]
        rem.save(update_fields=fields)
    return 1


def _schedule(rem: Reminder, *, delay: int) -> None:
    """Plan webhook attempt number webhook_attempts + 1 in `delay` seconds (in
    the caller's transaction; published once it commits)."""
    rem.webhook = Reminder.Webhook.PENDING
    rem.webhook_next_at = timezone.now() + timedelta(seconds=delay)
    pk, attempt = rem.pk, rem.webhook_attempts + 1
    transaction.on_commit(lambda: _send_webhook(pk, attempt, delay))


def _send_webhook(pk: uuid.UUID, attempt: int, countdown: int) -> None:
    from agents.tasks import deliver_reminder_webhook

    try:
        deliver_reminder_webhook.apply_async(
            args=(str(pk), attempt), countdown=countdown
        )
    except KombuOperationalError:
        logger.warning("broker unavailable; the scan sends webhook %s again", pk)


def _resend_lost_webhooks() -> None:
    late = timezone.now() - timedelta(seconds=LOST_AFTER_SECONDS)
    for pk, attempts in Reminder.objects.filter(
        webhook=Reminder.Webhook.PENDING, webhook_next_at__lt=late
    ).values_list("pk", "webhook_attempts")[:SCAN_LIMIT]:
        _send_webhook(pk, attempts + 1, 0)


def webhook_attempt(*, reminder_id: str, attempt: int) -> str:
    """Attempt number `attempt` at the user's webhook (a repeat of an attempt
    already made is dropped). The POST happens outside any transaction; the
    next attempt is scheduled with backoff, up to AGENT_WEBHOOK_MAX_ATTEMPTS.
    Returns the reminder's webhook state."""
    claimed = Reminder.objects.filter(
        pk=uuid.UUID(reminder_id),
        webhook=Reminder.Webhook.PENDING,
        webhook_attempts=attempt - 1,
    ).update(webhook_attempts=attempt)
    if not claimed:
        return "skipped"
    rem = Reminder.objects.select_related("user").get(pk=uuid.UUID(reminder_id))
    outcome = webhooks.deliver(
        rem.user.webhook_url,
        rem.user.webhook_secret,
        {
            "type": "reminder.due",
            "reminder_id": rem.public_id,
            "what": rem.what,
            "due_at": iso_time(rem.due_at),
            "memory_id": f"mem_{rem.memory_id}" if rem.memory_id else None,
        },
        allow_private=settings.AGENT_WEBHOOK_ALLOW_PRIVATE,
        timeout=settings.AGENT_WEBHOOK_TIMEOUT_SECONDS,
        delivery_id=rem.public_id,
    )
    with transaction.atomic():
        rem = Reminder.objects.select_for_update().get(pk=rem.pk)
        if rem.webhook != Reminder.Webhook.PENDING or rem.webhook_attempts != attempt:
            return str(rem.webhook)
        rem.webhook_error = outcome.error[:500]
        if outcome.ok:
            rem.webhook = Reminder.Webhook.DELIVERED
        elif outcome.refused:
            rem.webhook = Reminder.Webhook.REFUSED
        elif not outcome.retryable or attempt >= settings.AGENT_WEBHOOK_MAX_ATTEMPTS:
            rem.webhook = Reminder.Webhook.FAILED
        else:
            _schedule(rem, delay=_delay(attempt))
        rem.save(update_fields=["webhook", "webhook_error", "webhook_next_at"])
    return str(rem.webhook)


def _delay(attempt: int) -> int:
    delays = webhooks.retry_delays(
        settings.AGENT_WEBHOOK_MAX_ATTEMPTS, settings.AGENT_WEBHOOK_RETRY_BASE_SECONDS
    )
    return delays[min(attempt - 1, len(delays) - 1)]
