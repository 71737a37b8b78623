"""The real URLs plus a test-only endpoint that runs deliberately unscoped queries
inside a real request (tests/test_rls.py)."""

from __future__ import annotations

from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from kimberly import urls


class UnscopedProbe(APIView):
    """What an ORM query without any user filter returns in this request."""

    permission_classes = [AllowAny]  # an anonymous request is probed too

    def get(self, request: Request) -> Response:
        from chat.models import Conversation
        from memory.models import Goal, MemoryItem, MemoryVersion
        from users.models import User

        return Response(
            {
                "items": sorted(
                    str(u) for u in MemoryItem.objects.values_list("user_id", flat=True)
                ),
                "versions": sorted(
                    str(u)
                    for u in MemoryVersion.objects.values_list(
                        "item__user_id", flat=True
                    )
                ),
                "goals": sorted(
                    str(u) for u in Goal.objects.values_list("user_id", flat=True)
                ),
                "conversations": Conversation.objects.count(),
                "users": sorted(
                    str(u) for u in User.objects.values_list("pk", flat=True)
                ),
            }
        )


handler400 = urls.handler400
handler404 = urls.handler404
handler500 = urls.handler500
urlpatterns = [path("v1/test/unscoped", UnscopedProbe.as_view()), *urls.urlpatterns]
