"""Append-only, hash-chained audit events (the database refuses UPDATE/DELETE)."""

from __future__ import annotations

from django.db import models


class AuditEvent(models.Model):
    """One thing that happened, by whom, to what; never memory content.

    `user_id` is a plain column, not a foreign key: events outlive the user they
    are about (deleting a user must not cascade into the audit log). Events of
    one user form a chain: `hash = sha256(prev_hash + canonical(event))`.
    """

    id = models.BigAutoField(primary_key=True)
    user_id = models.UUIDField(null=True, db_index=False)
    seq = models.PositiveBigIntegerField()
    actor_type = models.CharField(max_length=16)
    actor_id = models.CharField(max_length=64)
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=32, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    ip = models.CharField(max_length=64, blank=True)
    user_agent = models.CharField(max_length=256, blank=True)
    details = models.JSONField(default=dict)
    created_at = models.DateTimeField()
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user_id", "seq"],
                name="audit_user_seq_unique",
                nulls_distinct=False,
            ),
        ]
        indexes = [
            models.Index(fields=["user_id", "-created_at"], name="audit_user_created"),
            models.Index(
                fields=["user_id", "action", "-created_at"], name="audit_user_action"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.target_type}:{self.target_id}"


class AuditAnchor(models.Model):
    """Where a chain was cut by its retention policy: every event up to and
    including `through_seq` was deleted, and `through_hash` was the hash of the
    last of them, so the first event kept still links to it. The cut itself is an
    `audit.prune` event further along the same chain, naming this anchor, so an
    anchor nobody recorded does not verify. Append-only, like the events."""

    id = models.BigAutoField(primary_key=True)
    user_id = models.UUIDField(null=True)  # None: the global chain
    through_seq = models.PositiveBigIntegerField()
    through_hash = models.CharField(max_length=64)
    pruned = models.PositiveBigIntegerField()
    cut_before = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user_id", "through_seq"],
                name="audit_anchor_user_seq",
                nulls_distinct=False,
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id or 'global'} through {self.through_seq}"
