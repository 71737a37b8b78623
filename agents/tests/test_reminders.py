"""Reminders delivered by real beat scans into short-term memory (and to the
user's webhook, signed, with retries), listed and cancelled through the API."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.utils import timezone

from agents.models import Reminder
from agents.tests.conftest import wait_for, wait_status
from agents.webhooks import verify
from audit.models import AuditEvent
from memory.models import MemoryItem

pytestmark = pytest.mark.django_db(transaction=True)


def _reminder(api, text: str) -> Reminder:
    r = api.post("/v1/agents/tasks", {"task": text}, format="json")
    assert r.status_code == 202, r.content
    done = wait_status(r.json()["task_id"], "succeeded", "failed")
    assert done.status == "succeeded", done.error
    return Reminder.objects.get(task=done)


def test_a_reminder_due_in_the_past_is_delivered_by_the_next_scan(
    alice, alice_api, agents_worker, beat
):
    rem = _reminder(alice_api, "remind me to call mom tomorrow at 9")
    later = _reminder(alice_api, "remind me to renew the passport tomorrow at 10")
    Reminder.objects.filter(pk=rem.pk).update(
        due_at=timezone.now() - dt.timedelta(minutes=5)
    )
    delivered = wait_for(
        lambda: Reminder.objects.filter(pk=rem.pk, status="delivered").first(),
        timeout=30,
        what="the scan to deliver the reminder",
    )
    item = MemoryItem.objects.get(pk=delivered.memory_id)
    assert (item.user_id, item.tier, item.source) == (alice.pk, "short-term", "agent")
    assert item.content == "Reminder: call mom" and item.tags == ["reminder"]
    create = AuditEvent.objects.get(action="memory.create", target_id=item.public_id)
    assert create.actor_id == f"reminder:tsk_{rem.task_id}"
    shown = alice_api.get(f"/v1/agents/reminders/{rem.public_id}").json()
    assert shown["status"] == "delivered" and shown["memory_id"] == item.public_id
    assert shown["webhook"] == "none"
    # Not yet due: still waiting; delivered once, not again by later scans.
    assert Reminder.objects.get(pk=later.pk).status == "pending"
    assert MemoryItem.objects.filter(user=alice, tier="short-term").count() == 1


def test_a_cancelled_reminder_is_never_delivered(alice, alice_api, agents_worker):
    rem = _reminder(alice_api, "remind me to call mom tomorrow at 9")
    r = alice_api.post(f"/v1/agents/reminders/{rem.public_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    Reminder.objects.filter(pk=rem.pk).update(due_at=timezone.now())
    from agents.services.reminders import deliver_due

    assert deliver_due() == 0
    assert not MemoryItem.objects.filter(user=alice).exists()
    again = alice_api.post(f"/v1/agents/reminders/{rem.public_id}/cancel")
    assert again.status_code == 409 and again.json()["error"] == "reminder_not_pending"
    listed = alice_api.get("/v1/agents/reminders?status=cancelled").json()["items"]
    assert [x["id"] for x in listed] == [rem.public_id]


def test_a_due_reminder_is_posted_to_the_users_webhook_signed_with_retries(
    alice, alice_api, agents_worker, receiver, settings
):
    settings.AGENT_WEBHOOK_ALLOW_PRIVATE = True  # the receiver is on loopback
    r = alice_api.put(
        "/v1/user", {"webhook_url": receiver.url("/flaky")}, format="json"
    )
    assert r.status_code == 200, r.content
    secret = r.json()["webhook_secret"]
    rem = _reminder(alice_api, "remind me to call mom tomorrow at 9")
    Reminder.objects.filter(pk=rem.pk).update(due_at=timezone.now())
    from agents.services.reminders import deliver_due

    assert deliver_due() == 1
    done = wait_for(
        lambda: Reminder.objects.filter(pk=rem.pk, webhook="delivered").first(),
        timeout=30,
        what="the webhook to be delivered after a retry",
    )
    assert done.webhook_attempts == 2 and receiver.paths() == ["/flaky", "/flaky"]
    hit = receiver.hits[-1]
    assert verify(
        secret,
        hit.body,
        timestamp=hit.headers["X-Kimberly-Timestamp"],
        signature=hit.headers["X-Kimberly-Signature"],
    )
    body = json.loads(hit.body)
    assert body["reminder_id"] == rem.public_id and body["what"] == "call mom"
    assert body["memory_id"] == f"mem_{done.memory_id}"


def _delivered(user, **fields) -> Reminder:
    return Reminder.objects.create(
        user=user,
        what="call mom",
        due_at=timezone.now(),
        time_zone="UTC",
        status="delivered",
        webhook="pending",
        **fields,
    )


def test_a_repeated_attempt_is_dropped_and_a_refused_destination_is_never_retried(
    alice, receiver, settings
):
    from agents.services.reminders import webhook_attempt

    settings.AGENT_WEBHOOK_ALLOW_PRIVATE = True
    alice.webhook_url, alice.webhook_secret = receiver.url("/ok"), "s3cret"
    alice.save()
    rem = _delivered(alice)
    assert webhook_attempt(reminder_id=str(rem.pk), attempt=1) == "delivered"
    assert webhook_attempt(reminder_id=str(rem.pk), attempt=1) == "skipped"
    assert receiver.paths() == ["/ok"]
    assert receiver.hits[0].headers["X-Kimberly-Delivery"] == rem.public_id

    settings.AGENT_WEBHOOK_ALLOW_PRIVATE = False  # loopback over http: refused
    other = _delivered(alice)
    assert webhook_attempt(reminder_id=str(other.pk), attempt=1) == "refused"
    assert receiver.paths() == ["/ok"]  # never contacted


def test_a_webhook_attempt_whose_message_was_lost_is_sent_again_by_the_scan(
    alice, receiver, agents_worker, settings
):
    from agents.services.reminders import deliver_due

    alice.webhook_url, alice.webhook_secret = receiver.url("/ok"), "s3cret"
    alice.save()
    rem = _delivered(alice, webhook_next_at=timezone.now() - dt.timedelta(minutes=10))
    assert deliver_due() == 0
    wait_for(
        lambda: Reminder.objects.filter(pk=rem.pk, webhook="delivered").exists(),
        what="the lost attempt to be made",
    )
    assert receiver.paths() == ["/ok"]
