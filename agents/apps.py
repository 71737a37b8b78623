from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from agents.metrics import AgentQueueCollector
        from kimberly import hooks

        hooks.register_store_collector(AgentQueueCollector())
