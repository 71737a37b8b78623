from django.urls import path

from audit import apis

urlpatterns = [
    path("audit/logs", apis.AuditLogListApi.as_view(), name="audit-logs"),
]
