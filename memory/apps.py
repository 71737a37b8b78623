from django.apps import AppConfig


class MemoryConfig(AppConfig):
    name = "memory"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from kimberly import hooks
        from memory import embeddings

        hooks.register_warmup(embeddings.warm_up)
