"""HTTP API of the agents app: agent types, tasks, reminders and the calendar."""
