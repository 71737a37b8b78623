"""Prometheus metrics of the users app (no per-user labels)."""

from __future__ import annotations

from prometheus_client import Counter

logins = Counter("kimberly_auth_logins", "Login attempts by result.", ["result"])
