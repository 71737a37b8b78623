"""A user's meditation weights: the four signals of the score and how much each counts.

A user preference (stored on User, set through PUT /v1/user), validated here so
that users/ needs nothing of memory/; meditation reads them through weights_for.
"""

from __future__ import annotations

from typing import Any

from kimberly.api.errors import invalid_field

SIGNALS = ("relevance_to_goals", "emotional_weight", "predictive_value", "recency_freq")


DEFAULT_WEIGHTS = dict(zip(SIGNALS, (0.40, 0.30, 0.20, 0.10), strict=True))


def normalize_weights(raw: Any) -> dict[str, float]:
    """All four weights, each a number in [0, 1], not all zero; scaled to sum 1."""
    if not isinstance(raw, dict) or set(raw) != set(SIGNALS):
        raise invalid_field(
            "meditation_weights", f"must have exactly: {', '.join(SIGNALS)}"
        )
    for name, value in raw.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 <= value <= 1
        ):
            raise invalid_field(
                f"meditation_weights.{name}", "must be a number from 0 to 1"
            )
    total = float(sum(raw.values()))
    if total <= 0:
        raise invalid_field("meditation_weights", "must not all be zero")
    return {name: round(float(raw[name]) / total, 6) for name in SIGNALS}
