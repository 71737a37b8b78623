from django.apps import AppConfig


class WebConfig(AppConfig):
    """The browser UI: Django templates and htmx over the apps' services and
    selectors; it owns no tables."""

    name = "web"
    default_auto_field = "django.db.models.BigAutoField"
