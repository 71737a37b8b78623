"""Template filters of the UI."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def bytes(value: int) -> str:
    """1536 → "1.5 KB" (powers of 1024, as the quotas are set)."""
    size = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"  # pragma: no cover - the loop always returns
