"""text/event-stream: for operations that can stream (POST /v1/chat with stream)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rest_framework.renderers import BaseRenderer


def sse_event(event: str, data: Any) -> str:
    """One server-sent event whose data is a JSON document."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


class EventStreamRenderer(BaseRenderer):
    """A whole (non-streamed) body as one event: `done`, or `error` for 4xx/5xx,
    so a client that asked for a stream reads every answer the same way."""

    media_type = "text/event-stream"
    format = "sse"
    charset = "utf-8"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        response = (renderer_context or {}).get("response")
        failed = response is not None and response.status_code >= 400
        return sse_event("error" if failed else "done", data).encode()
