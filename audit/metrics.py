"""Prometheus metrics of the audit app."""

from __future__ import annotations

from prometheus_client import Counter

events = Counter(
    "kimberly_audit_events", "Audit events appended, by action.", ["action"]
)
