"""Passwords of the embedded servers, generated once and kept in var/ (mode 0600)."""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from kimberly.runtime import common


@dataclass(frozen=True)
class Credentials:
    pg_superuser: str  # role "postgres": bootstrap (roles, extensions) only
    pg_app: str  # the app's role: owns the database, may create test databases
    valkey: str  # requirepass


def path() -> Path:
    return common.var_dir() / "credentials.json"


def load() -> Credentials | None:
    try:
        return Credentials(**json.loads(path().read_text()))
    except FileNotFoundError:
        return None


def load_or_create() -> Credentials:
    """The stored credentials; new random ones the first time (callers hold the lock)."""
    if (creds := load()) is not None:
        return creds
    # URL-safe tokens: they go into URLs without escaping.
    creds = Credentials(*(secrets.token_urlsafe(24) for _ in range(3)))
    common.write_private(path(), json.dumps(asdict(creds), indent=2) + "\n")
    return creds
