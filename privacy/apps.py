from django.apps import AppConfig


class PrivacyConfig(AppConfig):
    """What a user can prove about their data: export and erasure (with a
    receipt that every store was checked); above every other app."""

    name = "privacy"
    default_auto_field = "django.db.models.BigAutoField"
