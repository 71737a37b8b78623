from django.apps import AppConfig


class MemoryConfig(AppConfig):
    name = "memory"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Store gauges are read at scrape time by the web's /metrics view.
        from kimberly.metrics_view import register_store_collector
        from memory.metrics import EmbeddingBacklogCollector, MemoryStoreCollector

        register_store_collector(MemoryStoreCollector())
        register_store_collector(EmbeddingBacklogCollector())
