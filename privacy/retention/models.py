"""Retention policies and the record of their enforcement (imported by privacy/models.py)."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class DataType(models.TextChoices):
    """What a retention policy applies to (privacy/retention/enforce.py says how)."""

    CHAT_MESSAGES = "chat_messages"
    SHORT_TERM_MEMORIES = "short_term_memories"
    RETRIEVAL_RECORDS = "retrieval_records"
    EXPORTS = "exports"
    AUDIT_EVENTS = "audit_events"
    TELEMETRY = "telemetry"


class RetentionPolicy(models.Model):
    """How many days one data type is kept: the system's (user empty; edited by
    admins, over the RETENTION_DEFAULT_DAYS setting) or one user's, which may only
    be shorter than the system's."""

    data_type = models.CharField(max_length=32, choices=DataType.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,  # the unique (user, data_type) index leads with user
        help_text="empty = the system default for everyone",
    )
    days = models.PositiveIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(36_500)]
    )
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=64, blank=True)

    class Meta:
        verbose_name_plural = "retention policies"
        constraints = [
            models.UniqueConstraint(
                fields=["user", "data_type"],
                name="privacy_retention_user_type",
                nulls_distinct=False,
            ),
            models.CheckConstraint(
                condition=models.Q(days__gte=1), name="privacy_retention_days_1"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.data_type}: {self.days} d ({self.user_id or 'system'})"


class RetentionRun(models.Model):
    """One enforcement pass of one data type: when it ran, the system cutoff it
    applied and how many records went (the compliance check reads the last one
    that did not fail)."""

    data_type = models.CharField(max_length=32, choices=DataType.choices)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    cutoff = models.DateTimeField(help_text="the system default's cutoff")
    deleted = models.PositiveBigIntegerField(default=0)
    users_with_own_policy = models.PositiveIntegerField(
        default=0, help_text="whose shorter window had a pass of its own"
    )
    error = models.CharField(
        max_length=300, blank=True, help_text="why the pass stopped early, if it did"
    )

    class Meta:
        indexes = [
            models.Index(
                fields=["data_type", "-finished_at"], name="privacy_retention_run"
            )
        ]

    def __str__(self) -> str:
        return f"{self.data_type} @ {self.finished_at:%Y-%m-%d %H:%M}"
