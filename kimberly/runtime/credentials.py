"""Secrets of the embedded servers, generated once and kept in var/ (mode 0600).

A file written by older code lacks the fields added since: it keeps every value
it has and gains the missing ones, so a running or stored server stays reachable.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from kimberly.runtime import common


@dataclass(frozen=True)
class Credentials:
    pg_superuser: str  # role "postgres": bootstrap (roles, extensions) only
    pg_app: str  # the app's role: owns the database, may create test databases
    valkey: str  # requirepass
    # The embedded S3's one identity (SeaweedFS s3.json): AWS-shaped key pair.
    s3_access_key: str = ""
    s3_secret_key: str = ""
    # SeaweedFS's JWT signing keys (security.toml): volume-server writes and reads
    # ([jwt.signing], [jwt.signing.read]) and filer writes and reads
    # ([jwt.filer_signing], [jwt.filer_signing.read]).
    weed_signing: str = ""
    weed_signing_read: str = ""
    weed_filer_signing: str = ""
    weed_filer_signing_read: str = ""


def _generate(field: str) -> str:
    if field == "s3_access_key":
        return "KB" + secrets.token_hex(9).upper()  # 20 characters, like AWS's
    # URL-safe tokens: they go into URLs and TOML strings without escaping.
    if field.startswith("weed_"):
        return secrets.token_urlsafe(32)  # HS256 keys: 256 bits
    return secrets.token_urlsafe(30 if field == "s3_secret_key" else 24)


def path() -> Path:
    return common.var_dir() / "credentials.json"


def _stored() -> dict[str, str] | None:
    try:
        data = json.loads(path().read_text())
    except FileNotFoundError:
        return None
    names = {f.name for f in fields(Credentials)}
    return {k: str(v) for k, v in data.items() if k in names and v}


def load() -> Credentials | None:
    """The stored credentials (fields missing from an older file are empty)."""
    stored = _stored()
    if stored is None:
        return None
    return Credentials(**{f.name: stored.get(f.name, "") for f in fields(Credentials)})


def load_or_create() -> Credentials:
    """The stored credentials, missing ones generated and saved (callers hold the lock)."""
    stored = _stored() or {}
    complete = {
        f.name: stored.get(f.name) or _generate(f.name) for f in fields(Credentials)
    }
    creds = Credentials(**complete)
    if complete != stored:
        common.write_private(path(), json.dumps(asdict(creds), indent=2) + "\n")
    return creds
