"""OpenAPI generation: drf-spectacular's AutoSchema, plus what every operation shares.

Every operation documents the error statuses it can answer with the one error
body (`Error`); request bodies say what the parsers and serializers really
refuse: unknown fields (StrictInput), NUL characters, blank text.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.drainage import get_override, has_override
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import force_instance
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from kimberly.api.serializers import NonBlank, StrictInput

ERRORS: dict[int, str] = {
    400: "The request is not valid (validation_error, malformed_request).",
    401: "Missing, malformed, unknown or expired bearer token.",
    403: "Not allowed (permission_denied; sandbox_violation: the code policy).",
    404: "No such object of yours (another user's objects are 404 too).",
    409: "Conflict with the current state.",
    413: "The request body or the content is larger than the server accepts.",
    415: "The body is not application/json.",
    429: "Rate limited (rate_limited: details.group, details.by = user or ip) or"
    " over quota; Retry-After says when to try again.",
    502: "The model runner failed (model_runner_error); your message is kept.",
    503: "A dependency is down.",
    504: "The model runner timed out (model_runner_timeout); your message is kept.",
}

# PostgreSQL text cannot hold NUL, and DRF refuses it in every CharField; DRF
# also trims and refuses blank text unless a field allows it.
NO_NUL = "^[^\\u0000]*$"
NOT_BLANK = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"


class ErrorSerializer(serializers.Serializer[Any]):
    """The one error body (kimberly.api.exceptions)."""

    error = serializers.CharField(help_text="stable code, e.g. validation_error")
    message = serializers.CharField()
    code = serializers.IntegerField(help_text="the HTTP status")
    details = serializers.DictField(help_text="e.g. fields, retry_after, max_bytes")


def error_responses(*statuses: int, **descriptions: str) -> dict[int, OpenApiResponse]:
    """Responses for `extend_schema(responses=...)`: an operation's own errors.

    `descriptions` override the generic text, keyed `e409="..."`.
    """
    return {
        status: OpenApiResponse(
            ErrorSerializer, description=descriptions.get(f"e{status}", ERRORS[status])
        )
        for status in statuses
    }


class KimberlyAutoSchema(AutoSchema):
    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        responses = operation["responses"]
        for status in _shared_errors(operation):
            if str(status) not in responses:
                responses[str(status)] = self._get_response_for_code(
                    error_responses(status)[status], str(status)
                )
        if any(operation.get("security", [])):
            _rate_limits_documented(responses)
        self._errors_as_events(responses)
        return operation

    def _errors_as_events(self, responses: dict[str, Any]) -> None:
        """An operation that can stream answers its errors as one `error` event
        when the client asked for text/event-stream (EventStreamRenderer)."""
        for code, response in responses.items():
            content = response.get("content", {})
            if int(code) >= 400 and "text/event-stream" in content:
                event = self._get_response_for_code(
                    OpenApiResponse(EventSerializer), code
                )["content"]["text/event-stream"]
                content["text/event-stream"] = event

    def _map_basic_serializer(self, serializer: Any, direction: str) -> Any:
        schema = super()._map_basic_serializer(serializer, direction)
        if direction == "request" and isinstance(
            force_instance(serializer), StrictInput
        ):
            schema["additionalProperties"] = False
        return schema

    def _insert_field_validators(self, field: Any, schema: dict[str, Any]) -> None:
        super()._insert_field_validators(field, schema)
        # allow_blank=True on a NonBlank field only lets the service see "" (and
        # refuse it itself): the schema must not offer "" as valid.
        if _has_non_blank(field) and "oneOf" in schema:
            schema.update(schema.pop("oneOf")[0])

    def _map_serializer_field(
        self, field: Any, direction: str, bypass_extensions: bool = False
    ) -> Any:
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if schema is None:
            return None
        # A JSONField handed raw to a service is documented by a field
        # (extend_schema_field); give it that field's limits too.
        override = (
            get_override(field, "field") if has_override(field, "field") else None
        )
        if isinstance(override, serializers.Field):
            self._insert_field_validators(override, schema)
        if (
            direction == "request"
            and isinstance(field, serializers.CharField)
            and schema.get("type") == "string"
            and not {"format", "enum", "pattern"} & set(schema)
        ):
            schema["pattern"] = NOT_BLANK if _needs_text(field) else NO_NUL
        return schema


def _needs_text(field: serializers.CharField) -> bool:
    trimmed_and_required = field.trim_whitespace and not field.allow_blank
    return trimmed_and_required or _has_non_blank(field)


def _has_non_blank(field: Any) -> bool:
    return any(isinstance(v, NonBlank) for v in getattr(field, "validators", []))


def _shared_errors(operation: dict[str, Any]) -> list[int]:
    """What any operation of this shape can answer: parsing, auth, lookups."""
    where = {p["in"] for p in operation.get("parameters", [])}
    statuses: list[int] = []
    if "requestBody" in operation:
        statuses += [400, 413, 415]
    elif "query" in where:
        statuses.append(400)
    if any(operation.get("security", [])):
        statuses += [401, 429]  # 429: kimberly.api.throttle, on every one
    if "path" in where:
        statuses.append(404)
    return statuses


RATE_LIMITED = "or rate_limited (details.group, details.by: user or ip)"
RETRY_AFTER = {
    "schema": {"type": "integer", "minimum": 1},
    "description": "seconds until the limit's window ends",
}


def _rate_limits_documented(responses: dict[str, Any]) -> None:
    """Every authenticated operation can be rate limited: its 429 says so (also
    one whose own text names only its quota) and documents Retry-After."""
    response = responses["429"]
    if "rate_limited" not in response.get("description", ""):
        response["description"] = f"{response['description']}; {RATE_LIMITED}"
    response.setdefault("headers", {}).setdefault("Retry-After", RETRY_AFTER)


class EventSerializer(serializers.Serializer[Any]):
    """One server-sent event as schemathesis and clients parse it (OpenAPI 3.0:
    the schema of a text/event-stream response describes each event)."""

    event = serializers.ChoiceField(
        choices=["delta", "done", "error"],
        help_text="delta: {content} of the reply so far; done: the whole JSON body;"
        " error: the error body",
    )
    data = serializers.CharField(help_text="a JSON document")  # type: ignore[assignment]
