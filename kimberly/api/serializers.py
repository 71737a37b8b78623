"""Shared serializer plumbing."""

from __future__ import annotations

from datetime import datetime
from typing import Any, overload

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


class NonBlank:
    """Text must hold a non-whitespace character (the schema says so: a pattern).

    For fields that keep their whitespace (trim_whitespace=False). With
    enforce=False it only documents a rule the service checks itself (e.g. so
    the service's invalid-write metrics see the request).
    """

    message = "must contain a non-whitespace character"

    def __init__(self, *, enforce: bool = True) -> None:
        self.enforce = enforce

    def __call__(self, value: str) -> None:
        if self.enforce and not value.strip():
            raise serializers.ValidationError(self.message)


def documented_json(schema: Any, **kwargs: Any) -> serializers.JSONField:
    """A JSONField passed raw to a service that validates it, documented in the
    OpenAPI schema as `schema` (a serializer or field saying what is accepted)."""
    field_cls = extend_schema_field(schema)(
        type("JSONField", (serializers.JSONField,), {})
    )
    return field_cls(**kwargs)


class StrictInput(serializers.Serializer):
    """Input serializer that refuses unknown fields instead of ignoring them, and
    JSON of the wrong type instead of coercing it (DRF reads 0 as "0" or False):
    the body must be what the OpenAPI schema says."""

    json_types = True  # False for query parameters, which are always text

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            errors = {name: ["Unknown field."] for name in set(data) - set(self.fields)}
            if self.json_types:
                errors |= {
                    name: [f"Must be {kind}."]
                    for name, field in self.fields.items()
                    if name in data and (kind := _wrong_json_type(field, data[name]))
                }
            if errors:
                raise serializers.ValidationError(dict(sorted(errors.items())))
        return super().to_internal_value(data)


class QueryInput(StrictInput):
    """Query parameters: unknown ones are refused, text is parsed as DRF does."""

    json_types = False


_JSON_KINDS: list[tuple[type[serializers.Field], tuple[type, ...], str]] = [
    (serializers.BooleanField, (bool,), "true or false"),
    (serializers.IntegerField, (int,), "an integer"),
    (serializers.FloatField, (int, float), "a number"),
    (serializers.CharField, (str,), "a string"),
]


def _wrong_json_type(field: serializers.Field, value: Any) -> str | None:
    """What `value` should have been for `field`, or None when its type is right."""
    if value is None:
        return None  # allow_null decides
    if isinstance(field, serializers.ListField) and isinstance(value, list):
        return next(
            filter(None, (_wrong_json_type(field.child, v) for v in value)), None
        )
    for field_cls, types, kind in _JSON_KINDS:
        if isinstance(field, field_cls):
            wrong = not isinstance(value, types) or (
                bool not in types and isinstance(value, bool)
            )
            return kind if wrong else None
    return None


def parse(serializer_cls: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    """Validate `data` with `serializer_cls`; raise DRF's ValidationError (400) on failure."""
    ser = serializer_cls(data=data)
    ser.is_valid(raise_exception=True)
    return dict(ser.validated_data)


@overload
def iso_time(value: datetime) -> str: ...
@overload
def iso_time(value: datetime | None) -> str | None: ...
def iso_time(value: datetime | None) -> str | None:
    """A time as the API writes it: ISO 8601, UTC as `Z` (None stays None)."""
    return value.isoformat().replace("+00:00", "Z") if value is not None else None
