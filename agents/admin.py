"""Agents for operators, read-only: switches (change them with ./cli agent, which
audits), and tasks with their traces, reminders and events."""

from __future__ import annotations

from django.contrib import admin

from agents.models import AgentSwitch, AgentTask, Event, Reminder
from kimberly.admin_views import ReadOnlyAdminMixin


@admin.register(AgentSwitch)
class AgentSwitchAdmin(ReadOnlyAdminMixin, admin.ModelAdmin[AgentSwitch]):
    list_display = ["agent", "enabled", "reason", "changed_by", "changed_at"]


@admin.register(AgentTask)
class AgentTaskAdmin(ReadOnlyAdminMixin, admin.ModelAdmin[AgentTask]):
    list_display = ["id", "user", "agent", "status", "created_at", "finished_at"]
    list_filter = ["agent", "status"]
    search_fields = ["id", "user__email"]
    # The task text and params are the user's words; the trace shows what ran.
    fields = [
        "id",
        "user",
        "agent",
        "status",
        "mode",
        "routed",
        "preview",
        "timeout",
        "attempts",
        "error",
        "trace",
        "plan",
        "created_at",
        "started_at",
        "finished_at",
    ]


@admin.register(Reminder)
class ReminderAdmin(ReadOnlyAdminMixin, admin.ModelAdmin[Reminder]):
    list_display = ["id", "user", "status", "due_at", "webhook", "webhook_attempts"]
    list_filter = ["status", "webhook"]
    exclude = ["what"]


@admin.register(Event)
class EventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin[Event]):
    list_display = ["id", "user", "source", "starts_at", "all_day"]
    list_filter = ["source"]
    exclude = ["title"]
