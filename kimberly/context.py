"""Who is acting and through which request: passed from APIs into services."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kimberly.api.ratelimit import client_ip

if TYPE_CHECKING:
    from users.models import User


@dataclass(frozen=True)
class Actor:
    type: str  # "user" | "agent" | "system"
    id: str

    @classmethod
    def system(cls, name: str = "system") -> Actor:
        return cls("system", name)


@dataclass(frozen=True)
class RequestMeta:
    request_id: str = ""
    ip: str = ""
    user_agent: str = ""


@dataclass(frozen=True)
class Context:
    """The acting party and the request it came through (empty for CLI/tasks)."""

    actor: Actor
    meta: RequestMeta = field(default_factory=RequestMeta)


def request_meta(request: Any) -> RequestMeta:
    return RequestMeta(
        request_id=getattr(request, "request_id", ""),
        ip=client_ip(request.META),
        user_agent=request.META.get("HTTP_USER_AGENT", "")[:256],
    )


def context_from_request(request: Any) -> Context:
    """The authenticated user acting through this request."""
    return Context(
        actor=Actor("user", str(request.user.pk)), meta=request_meta(request)
    )


def current_user(request: Any) -> User:
    """The authenticated user of a request (views behind IsAuthenticated only)."""
    from django.contrib.auth import get_user_model  # kimberly/ imports no app

    user = request.user
    assert isinstance(user, get_user_model())
    return user
