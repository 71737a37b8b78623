from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.admin.models import LogEntry
        from django.db.models.signals import post_save

        from audit.admin_actions import audit_admin_action

        post_save.connect(
            audit_admin_action, sender=LogEntry, dispatch_uid="audit-admin"
        )
