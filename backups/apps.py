from django.apps import AppConfig


class BackupsConfig(AppConfig):
    name = "backups"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from backups.metrics import BackupCollector
        from kimberly import hooks

        hooks.register_store_collector(BackupCollector())
