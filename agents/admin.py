"""Agent switches for operators (change them with ./cli agent: it audits)."""

from __future__ import annotations

from django.contrib import admin

from agents.models import AgentSwitch
from kimberly.admin_views import ReadOnlyAdminMixin


@admin.register(AgentSwitch)
class AgentSwitchAdmin(ReadOnlyAdminMixin, admin.ModelAdmin[AgentSwitch]):
    list_display = ["agent", "enabled", "reason", "changed_by", "changed_at"]
