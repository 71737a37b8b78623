from django.urls import path

from agents import apis

urlpatterns = [
    path("agents", apis.AgentListApi.as_view(), name="agents"),
    path("agents/<str:name>", apis.AgentDetailApi.as_view(), name="agent"),
]
