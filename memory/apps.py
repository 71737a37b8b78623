from django.apps import AppConfig


class MemoryConfig(AppConfig):
    name = "memory"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # kimberly/ imports no app: the model warm-up, the store gauges (read at
        # scrape time by the web's /metrics) and the model's health check are
        # registered here.
        from kimberly import hooks
        from memory import embeddings
        from memory.metrics import (
            EmbeddingBacklogCollector,
            MeditationRunCollector,
            MemoryStoreCollector,
            QuotaPressureCollector,
        )

        hooks.register_warmup(embeddings.warm_up)
        # the first load takes ~20 s on 2 cores
        hooks.register_healthcheck(
            "embedding_model", embeddings.healthcheck, required=True, seconds=120
        )
        hooks.register_store_collector(MemoryStoreCollector())
        hooks.register_store_collector(EmbeddingBacklogCollector())
        hooks.register_store_collector(QuotaPressureCollector())
        hooks.register_store_collector(MeditationRunCollector())

        from memory.services.consent import sensitive_consent_changed
        from users import consents

        consents.on_change(consents.Purpose.SENSITIVE_MEMORY, sensitive_consent_changed)

        from memory.selectors import VECTOR_CONSENT
        from memory.services.sealing import vector_consent_changed

        consents.on_change(VECTOR_CONSENT, vector_consent_changed)
