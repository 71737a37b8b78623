from django.apps import AppConfig


class ChatConfig(AppConfig):
    """Conversations with Kimberly over the user's memory, through a model runner."""

    name = "chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # kimberly/ imports no app: the model server's check is registered here.
        # Optional: without a model server chat answers offline.
        from chat import runners
        from kimberly import hooks

        hooks.register_healthcheck(
            "model_runner", runners.healthcheck, required=False, seconds=15
        )
