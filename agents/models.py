"""Runtime state of the agent types (declared in agents/registry.py)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


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
