from csp.constants import UNSAFE_INLINE
from csp.decorators import csp_update
from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from kimberly import apis
from kimberly.api.exceptions import json_404
from kimberly.metrics_view import metrics_view

handler400 = "kimberly.api.exceptions.json_400"
handler404 = "web.views.errors.not_found"
handler500 = "web.views.errors.server_error"

v1: list[URLPattern | URLResolver] = [
    path("health", apis.HealthApi.as_view(), name="health"),
    path("health/ready", apis.ReadyApi.as_view(), name="health-ready"),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    # Split: the page's script is a file of its own, allowed by the strict CSP;
    # Swagger UI sets style attributes, so this one page allows inline styles.
    path(
        "docs",
        csp_update({"style-src": [UNSAFE_INLINE]})(
            SpectacularSwaggerSplitView.as_view(url_name="schema")
        ),
        name="docs",
    ),
    path("", include("users.urls")),
    path("", include("memory.urls")),
    path("", include("audit.urls")),
    path("", include("chat.urls")),
    path("", include("agents.urls")),
    path("", include("privacy.urls")),
    # Unknown routes under /v1 answer JSON 404, whatever the method (without the
    # exemption an unknown DELETE got CSRF's HTML 403).
    re_path(r"^.*$", csrf_exempt(json_404)),
]

urlpatterns = [
    path("v1/", include(v1)),
    path("admin/", admin.site.urls),
    path("metrics", metrics_view, name="prometheus-django-metrics"),
    # The browser UI: / is the dashboard (or the sign-in page).
    path("", include("web.urls")),
]
