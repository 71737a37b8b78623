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
    # The task's text, params, result and the words in its trace and plan are
    # the user's (and their memories'); the admin shows what ran, not what it said.
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
        "error_code",
        "steps",
        "planned",
        "created_at",
        "started_at",
        "finished_at",
    ]
    readonly_fields = ["error_code", "steps", "planned"]

    @admin.display(description="error")
    def error_code(self, task: AgentTask) -> str:
        return str((task.error or {}).get("code", ""))

    @admin.display(description="trace")
    def steps(self, task: AgentTask) -> str:
        """Each step: name, duration, the memory ids it read, how many writes."""
        return "\n".join(
            f"{s['step']} {s.get('duration_ms', 0)} ms"
            f" reads={[r['memory_id'] for r in s.get('reads', [])]}"
            f" writes={len(s.get('writes', []))}"
            + (f" error={s['error']}" if s.get("error") else "")
            for s in task.trace
        )

    @admin.display(description="plan")
    def planned(self, task: AgentTask) -> str:
        return ", ".join(w["kind"] for w in task.plan)


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
