from django.urls import URLPattern, URLResolver, path

from privacy.compliance.apis import ComplianceCheckApi
from privacy.erasure import apis as erasure_apis
from privacy.exports import apis as exports
from privacy.retention.apis import RetentionPoliciesApi

urlpatterns: list[URLPattern | URLResolver] = [
    # --- exports ---
    path("user/export", exports.ExportApi.as_view(), name="user-export"),
    path(
        "user/export/<str:export_id>",
        exports.ExportDetailApi.as_view(),
        name="user-export-detail",
    ),
    path("user/exports", exports.ExportListApi.as_view(), name="user-exports"),
    # --- erasure ---
    path("user/delete", erasure_apis.DeletionApi.as_view(), name="user-delete"),
    path(
        "user/delete/<str:deletion_id>",
        erasure_apis.DeletionDetailApi.as_view(),
        name="user-delete-detail",
    ),
    # --- retention and compliance ---
    path(
        "compliance/retention-policies",
        RetentionPoliciesApi.as_view(),
        name="compliance-retention-policies",
    ),
    path("compliance/check", ComplianceCheckApi.as_view(), name="compliance-check"),
]
