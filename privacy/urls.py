from django.urls import URLPattern, URLResolver, path

from privacy.erasure import apis as erasure_apis

# Each part adds its routes here (exports, erasure).
urlpatterns: list[URLPattern | URLResolver] = [
    path("user/delete", erasure_apis.DeletionApi.as_view(), name="user-delete"),
    path(
        "user/delete/<str:deletion_id>",
        erasure_apis.DeletionDetailApi.as_view(),
        name="user-delete-detail",
    ),
]
