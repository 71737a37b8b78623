"""Who is acting and through which request: passed from APIs into services."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kimberly.api.ratelimit import client_ip


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


def context_from_request(request: Any) -> Context:
    user = request.user
    return Context(
        actor=Actor("user", str(user.pk)),
        meta=RequestMeta(
            request_id=getattr(request, "request_id", ""),
            ip=client_ip(request.META),
            user_agent=request.META.get("HTTP_USER_AGENT", "")[:256],
        ),
    )
