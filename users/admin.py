from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from kimberly.admin_views import ReadOnlyAdminMixin
from users.models import Consent, User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = [
        "email",
        "is_active",
        "is_staff",
        "embedding_enabled",
        "date_joined",
    ]
    search_fields = ["email"]
    # Set by the user through PUT /v1/user, which checks them (an IANA zone; a
    # URL the webhook policy allows); an operator may look, not bypass that.
    readonly_fields = ["time_zone", "webhook_url"]
    list_filter = ["is_active", "is_staff", "embedding_enabled"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        (
            "Settings",
            {
                "fields": (
                    "embedding_enabled",
                    "consent_telemetry",
                    "memory_auto_accept",
                    "time_zone",
                    "webhook_url",
                )
            },
        ),
        (
            "Permissions",
            {
                "fields": (
                    "is_active",
                    "is_staff",
                    "is_superuser",
                    "groups",
                    "user_permissions",
                )
            },
        ),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),
    )


@admin.register(Consent)
class ConsentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin[Consent]):
    """The ledger, read-only: a consent is the user's to give and withdraw."""

    list_display = ["user", "purpose", "granted_at", "withdrawn_at", "source"]
    list_filter = ["purpose"]
    search_fields = ["user__email"]
