from django.urls import URLPattern, URLResolver, path

from privacy.exports import apis as exports

# Each part adds its routes here (exports, erasure).
urlpatterns: list[URLPattern | URLResolver] = [
    # --- exports ---
    path("user/export", exports.ExportApi.as_view(), name="user-export"),
    path(
        "user/export/<str:export_id>",
        exports.ExportDetailApi.as_view(),
        name="user-export-detail",
    ),
    path("user/exports", exports.ExportListApi.as_view(), name="user-exports"),
]
