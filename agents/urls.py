from django.urls import path

from agents.apis import agents, schedule, tasks

urlpatterns = [
    path("agents", agents.AgentListApi.as_view(), name="agents"),
    path("agents/tasks", tasks.TaskListApi.as_view(), name="agent-tasks"),
    path(
        "agents/tasks/<str:task_id>",
        tasks.TaskDetailApi.as_view(),
        name="agent-task",
    ),
    path(
        "agents/tasks/<str:task_id>/cancel",
        tasks.TaskCancelApi.as_view(),
        name="agent-task-cancel",
    ),
    path(
        "agents/tasks/<str:task_id>/commit",
        tasks.TaskCommitApi.as_view(),
        name="agent-task-commit",
    ),
    path("agents/reminders", schedule.ReminderListApi.as_view(), name="reminders"),
    path(
        "agents/reminders/<str:reminder_id>",
        schedule.ReminderDetailApi.as_view(),
        name="reminder",
    ),
    path(
        "agents/reminders/<str:reminder_id>/cancel",
        schedule.ReminderCancelApi.as_view(),
        name="reminder-cancel",
    ),
    path("agents/events", schedule.EventListApi.as_view(), name="agent-events"),
    path("agents/calendar.ics", schedule.CalendarApi.as_view(), name="calendar"),
    path("agents/<str:name>", agents.AgentDetailApi.as_view(), name="agent"),
]
