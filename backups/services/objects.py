"""Backups in object storage: keys, manifests, hashed streams, retention.

A backup is two objects under BACKUP_PREFIX:

    backups/20261202T014500Z-42.dump            pg_dump -Fc output
    backups/20261202T014500Z-42.manifest.json   what verify checks it against

The key's timestamp (UTC, when the create started) orders backups and drives
retention, so the bucket alone says what exists even when the BackupRun rows
do not (a database restored from elsewhere).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from django.conf import settings

from backups.services.retention import keepers
from kimberly import storage
from kimberly.api.errors import ApplicationError, NotFound

_KEY = re.compile(r"^(?P<ts>\d{8}T\d{6}Z)-(?P<id>\d+)\.dump$")
_CHUNK = 1024 * 1024


class NoBackup(NotFound):
    code = "backup_not_found"


class BadBackupKey(ApplicationError):
    code = "backup_key_invalid"
    status = 400


def prefix() -> str:
    return f"{settings.BACKUP_PREFIX}/"


def dump_key(started_at: datetime, run_id: int) -> str:
    return f"{prefix()}{started_at.astimezone(UTC):%Y%m%dT%H%M%SZ}-{run_id}.dump"


def manifest_key(key: str) -> str:
    return key.removesuffix(".dump") + ".manifest.json"


def timestamp(key: str) -> datetime:
    """When the backup at `key` was started (BadBackupKey if it is not one)."""
    match = _KEY.match(key.removeprefix(prefix()))
    if not key.startswith(prefix()) or not match:
        raise BadBackupKey(
            f"not a backup key: {key!r} (expected {prefix()}<YYYYMMDDTHHMMSSZ>-<id>.dump)"
        )
    return datetime.strptime(match["ts"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def stored_dumps() -> dict[str, int]:
    """Every dump in the bucket and its size, newest first."""
    found = {
        key: size
        for key, size in storage.list_prefix(prefix()).items()
        if _KEY.match(key.removeprefix(prefix()))
    }
    return dict(
        sorted(found.items(), key=lambda kv: (timestamp(kv[0]), kv[0]), reverse=True)
    )


def resolve(key: str | None) -> str:
    """The named backup (checked to exist), or the newest one."""
    dumps = stored_dumps()
    if key is None:
        if not dumps:
            raise NoBackup(f"no backup under {prefix()}")
        return next(iter(dumps))
    timestamp(key)
    if key not in dumps:
        raise NoBackup(f"no backup {key}")
    return key


def read_manifest(key: str) -> dict[str, Any]:
    try:
        return dict(json.loads(storage.read_bytes(manifest_key(key))))
    except storage.ObjectNotFound as exc:
        raise NoBackup(f"backup {key} has no manifest") from exc


def write_manifest(key: str, manifest: dict[str, Any]) -> None:
    data = json.dumps(manifest, indent=2, sort_keys=True).encode()
    storage.put_bytes(manifest_key(key), data, "application/json")


class HashingReader:
    """A read-only stream that hashes (SHA-256) and counts what passes through."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self.sha256.update(data)
        self.size += len(data)
        return data

    def seekable(self) -> bool:
        return False

    @property
    def closed(self) -> bool:
        return bool(self._raw.closed)

    def close(self) -> None:
        self._raw.close()


def download(key: str, path: Path) -> tuple[str, int]:
    """Copy the object to `path` in chunks; its SHA-256 and size."""
    body = storage.open(key)
    try:
        reader = HashingReader(body)
        with path.open("wb") as out:
            while chunk := reader.read(_CHUNK):
                out.write(chunk)
    finally:
        body.close()
    return reader.sha256.hexdigest(), reader.size


def prune(now: datetime) -> list[str]:
    """Delete the backups (dump and manifest) retention does not keep."""
    dumps = list(stored_dumps())
    keep = keepers(
        map(timestamp, dumps),
        daily=settings.BACKUP_KEEP_DAILY,
        weekly=settings.BACKUP_KEEP_WEEKLY,
        monthly=settings.BACKUP_KEEP_MONTHLY,
        now=now,
        recent=timedelta(hours=settings.BACKUP_KEEP_RECENT_HOURS),
    )
    deleted = []
    for key in reversed(dumps):
        if timestamp(key) not in keep:
            storage.delete(key)
            storage.delete(manifest_key(key))
            deleted.append(key)
    return deleted
