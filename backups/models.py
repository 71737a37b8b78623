"""BackupRun: one create, verify or restore of a database backup.

Holds no user data (keys, sizes, checksums, check results), so it has no
row-level security policy. A live restore leaves this table as it is (see
backups/services/restore.py): the history of backups is not rolled back.
"""

from __future__ import annotations

from django.db import models


class BackupRun(models.Model):
    class Kind(models.TextChoices):
        CREATE = "create"
        VERIFY = "verify"
        RESTORE = "restore"

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    kind = models.CharField(max_length=8, choices=Kind.choices)
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.RUNNING
    )
    # the dump's object key (create: the one written; verify/restore: the one read)
    key = models.CharField(max_length=512, blank=True)
    size_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    # verify: one entry per check {"check", "ok", "detail"}; create: pruned keys
    details = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        app_label = "backups"

    def __str__(self) -> str:
        return f"{self.kind} {self.status} {self.key}"
