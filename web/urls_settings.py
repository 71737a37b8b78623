"""The Settings screen's pages and fragments (included by web/urls.py)."""

from django.urls import path

from web.views import privacy, settings

urlpatterns = [
    path("settings", settings.settings_page, name="settings"),
    path("settings/profile", settings.profile_save, name="settings-profile"),
    path("settings/weights", settings.weights_save, name="settings-weights"),
    path("settings/memory", settings.memory_settings_save, name="settings-memory"),
    path("settings/goals", settings.goal_add, name="settings-goal-add"),
    path(
        "settings/goals/<int:goal_id>/delete",
        settings.goal_delete,
        name="settings-goal-delete",
    ),
    path(
        "settings/consents/<str:purpose>/<str:action>",
        settings.consent_change,
        name="settings-consent",
    ),
    path("settings/tokens", settings.token_create, name="settings-token-create"),
    path(
        "settings/tokens/<str:token_key>/revoke",
        settings.token_revoke,
        name="settings-token-revoke",
    ),
    path("settings/exports", privacy.export_list, name="settings-exports"),
    path("settings/export", privacy.export_request, name="settings-export"),
    path(
        "settings/exports/<str:export_id>/download",
        privacy.export_download,
        name="settings-export-download",
    ),
    path("settings/delete", privacy.account_delete, name="settings-delete"),
    path(
        "account/deleted/<str:deletion_id>",
        privacy.account_deleted,
        name="account-deleted",
    ),
]
