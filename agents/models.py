"""Runtime state of the agent types (declared in agents/registry.py)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class AgentSwitch(models.Model):
    """An operator's global switch of one agent type (no row: enabled)."""

    agent = models.CharField(max_length=32, unique=True)
    enabled = models.BooleanField(default=True)
    reason = models.CharField(max_length=500, blank=True)
    changed_by = models.CharField(max_length=64)
    changed_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.agent}: {'on' if self.enabled else 'off'}"


class UserAgentSwitch(models.Model):
    """A user's own switch of one agent type for themselves (no row: enabled)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    agent = models.CharField(max_length=32)
    enabled = models.BooleanField(default=True)
    changed_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "agent"], name="agents_user_switch_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.agent}: {'on' if self.enabled else 'off'}"


TASK_ID_PREFIX = "tsk_"


class AgentTask(models.Model):
    """One task a user gave an agent: what it was asked, its state, and its trace.

    `mode` is what the next (or current) execution does: run it, preview it (plan
    the writes, apply none), or commit a preview (apply the planned writes).
    `claim` is the token of the execution holding the task; an execution writes
    its outcome only while the row still carries its token and is running, so a
    cancel or a time-out that got there first is never overwritten.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"
        TIMED_OUT = "timed_out"
        PREVIEWED = "previewed"

    class Mode(models.TextChoices):
        RUN = "run"
        PREVIEW = "preview"
        COMMIT = "commit"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,  # the indexes below lead with user
    )
    agent = models.CharField(max_length=32)
    task = models.TextField()
    params = models.JSONField(default=dict, blank=True)
    routed = models.BooleanField(default=False, help_text="agent chosen from the text")
    preview = models.BooleanField(default=False, help_text="asked for a preview")
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.RUN)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.QUEUED
    )
    timeout = models.PositiveIntegerField(help_text="seconds")
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(default=dict, blank=True)
    trace = models.JSONField(default=list, blank=True)
    plan = models.JSONField(default=list, blank=True, help_text="planned writes")
    attempts = models.PositiveSmallIntegerField(default=0)
    claim = models.UUIDField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["user", "-created_at"], name="agents_task_user_new"),
            models.Index(fields=["user", "status"], name="agents_task_user_status"),
            models.Index(fields=["status", "agent"], name="agents_task_status"),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.agent} {self.status}"

    @property
    def public_id(self) -> str:
        return f"{TASK_ID_PREFIX}{self.id}"


REMINDER_ID_PREFIX = "rem_"
EVENT_ID_PREFIX = "evt_"


class Reminder(models.Model):
    """A follow-up the reminder agent keeps: delivered into the user's short-term
    memory when due (and to their webhook, if they set one)."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        CANCELLED = "cancelled"
        FAILED = "failed"  # could not be stored (e.g. the memory quota is full)

    class Webhook(models.TextChoices):
        NONE = "none"  # the user has no webhook
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"  # every attempt failed
        REFUSED = "refused"  # a private destination

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    task = models.ForeignKey(
        AgentTask, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    what = models.CharField(max_length=500)
    due_at = models.DateTimeField()
    time_zone = models.CharField(max_length=64)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING
    )
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)
    memory_id = models.UUIDField(null=True, blank=True, help_text="what it became")
    error = models.CharField(max_length=500, blank=True)
    webhook = models.CharField(
        max_length=16, choices=Webhook.choices, default=Webhook.NONE
    )
    webhook_attempts = models.PositiveSmallIntegerField(default=0)
    # When the next attempt is due; the scan sends it again if its message is
    # lost (an attempt carries its number, so a repeat of one is dropped).
    webhook_next_at = models.DateTimeField(null=True, blank=True)
    webhook_error = models.CharField(max_length=500, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["due_at"],
                name="agents_reminder_due",
                condition=models.Q(status="pending"),
            ),
            models.Index(
                fields=["webhook_next_at"],
                name="agents_reminder_webhook_due",
                condition=models.Q(webhook="pending"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.status} {self.due_at:%Y-%m-%d %H:%M}"

    @property
    def public_id(self) -> str:
        return f"{REMINDER_ID_PREFIX}{self.id}"


class Event(models.Model):
    """A dated event the scheduler keeps (from a text, a memory or an .ics file)."""

    class Source(models.TextChoices):
        TEXT = "text"
        MEMORY = "memory"
        ICS = "ics"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    task = models.ForeignKey(
        AgentTask, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    uid = models.CharField(max_length=255, help_text="iCalendar UID")
    title = models.CharField(max_length=500)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField(null=True, blank=True)
    all_day = models.BooleanField(default=False)
    source = models.CharField(max_length=8, choices=Source.choices)
    memory_id = models.UUIDField(null=True, blank=True, help_text="found in")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "uid"], name="agents_event_uid")
        ]
        indexes = [models.Index(fields=["user", "starts_at"], name="agents_event_when")]

    def __str__(self) -> str:
        return f"{self.public_id} {self.title[:40]}"

    @property
    def public_id(self) -> str:
        return f"{EVENT_ID_PREFIX}{self.id}"
