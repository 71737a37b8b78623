from django.apps import AppConfig


class ChatConfig(AppConfig):
    """Conversations with Kimberly over the user's memory, through a model runner."""

    name = "chat"
    default_auto_field = "django.db.models.BigAutoField"
