"""Shared serializer plumbing."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


class StrictInput(serializers.Serializer):
    """Input serializer that refuses unknown fields instead of ignoring them."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {name: ["Unknown field."] for name in unknown}
                )
        return super().to_internal_value(data)


def parse(serializer_cls: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    """Validate `data` with `serializer_cls`; raise DRF's ValidationError (400) on failure."""
    ser = serializer_cls(data=data)
    ser.is_valid(raise_exception=True)
    return dict(ser.validated_data)
