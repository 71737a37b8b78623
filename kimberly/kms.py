"""Key-encryption keys (KEKs): the keys that wrap each user's data key.

A provider wraps and unwraps a data key under one of its KEKs and says which
(`key_id`), so a wrapped key records what can open it. Two providers:

- `local` (the default): AES-256-GCM under keys held by this deployment, from
  KMS_LOCAL_KEYS (`id:base64key,...`, an environment secret) or, when that is
  unset, from a file under var/ that is made on first use (0600). The current
  KEK is KMS_LOCAL_KEY_ID (the file's newest key by default). Older keys stay
  listed so data keys wrapped under them still open until re-wrapped.
- `aws`: AWS KMS (Encrypt / Decrypt under KMS_AWS_KEY_ID) through boto3; the
  key material never leaves KMS. KMS_AWS_ENDPOINT_URL points it elsewhere
  (the tests use a local stand-in that speaks the same protocol).

`provider()` is the one in use for new wraps (KMS_PROVIDER); `unwrap` finds the
provider of any wrapped key by the prefix of its key id.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

NONCE = 12


class KmsProvider(Protocol):
    name: str

    @property
    def key_id(self) -> str:
        """The KEK new wraps use, as recorded with each wrapped key."""
        ...

    def wrap(self, plaintext: bytes) -> bytes: ...

    def unwrap(self, blob: bytes, key_id: str) -> bytes: ...


class LocalKms:
    name = "local"

    def __init__(self, keys: dict[str, bytes], current: str) -> None:
        if current not in keys:
            raise ImproperlyConfigured(
                f"KMS_LOCAL_KEY_ID {current!r} is not a known key"
            )
        for kid, key in keys.items():
            if len(key) != 32:
                raise ImproperlyConfigured(f"local KEK {kid!r} must be 32 bytes")
        self._keys, self._current = keys, current

    @property
    def key_id(self) -> str:
        return f"local:{self._current}"

    def wrap(self, plaintext: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE)
        aad = self.key_id.encode()
        return nonce + AESGCM(self._keys[self._current]).encrypt(nonce, plaintext, aad)

    def unwrap(self, blob: bytes, key_id: str) -> bytes:
        kid = key_id.removeprefix("local:")
        if kid not in self._keys:
            raise ImproperlyConfigured(f"the local KEK {kid!r} is not configured")
        return AESGCM(self._keys[kid]).decrypt(
            blob[:NONCE], blob[NONCE:], key_id.encode()
        )


class AwsKms:
    name = "aws"

    def __init__(self, key_id: str, endpoint_url: str | None, region: str) -> None:
        import boto3

        if not key_id:
            raise ImproperlyConfigured("KMS_PROVIDER=aws needs KMS_AWS_KEY_ID")
        self._key_id = key_id
        self._client = boto3.client(
            "kms", endpoint_url=endpoint_url, region_name=region
        )

    @property
    def key_id(self) -> str:
        return f"aws:{self._key_id}"

    def wrap(self, plaintext: bytes) -> bytes:
        out = self._client.encrypt(KeyId=self._key_id, Plaintext=plaintext)
        return bytes(out["CiphertextBlob"])

    def unwrap(self, blob: bytes, key_id: str) -> bytes:
        out = self._client.decrypt(
            KeyId=key_id.removeprefix("aws:"), CiphertextBlob=blob
        )
        return bytes(out["Plaintext"])


def _local_keys() -> tuple[dict[str, bytes], str]:
    raw = settings.KMS_LOCAL_KEYS
    if raw:
        keys = {}
        for part in raw.split(","):
            kid, _, b64 = part.strip().partition(":")
            keys[kid] = base64.b64decode(b64)
        return keys, settings.KMS_LOCAL_KEY_ID or next(reversed(keys))
    path = Path(settings.KMS_LOCAL_KEY_FILE)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _create_key_file(path)
    stored = json.loads(path.read_text())
    keys = {k: base64.b64decode(v) for k, v in stored.items()}
    return keys, settings.KMS_LOCAL_KEY_ID or next(reversed(keys))


def _new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _create_key_file(path: Path) -> None:
    """The first key file, made once: O_EXCL, so two processes starting at the
    same time cannot each write a different first key."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process made it; read theirs
    with os.fdopen(fd, "w") as f:
        json.dump({"k1": _new_key()}, f)


def add_local_key(path: Path | None = None) -> str:
    """Add a new KEK to the local key file (it becomes the newest); returns its
    id, one past the highest ever listed, so a removed key's id is never reused
    for a different key."""
    path = path or Path(settings.KMS_LOCAL_KEY_FILE)
    stored = json.loads(path.read_text()) if path.exists() else {}
    numbers = [int(k[1:]) for k in stored if k[:1] == "k" and k[1:].isdigit()]
    kid = f"k{max(numbers, default=0) + 1}"
    stored[kid] = _new_key()
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(stored, f)
    tmp.replace(path)
    providers.cache_clear()
    return kid


@lru_cache(maxsize=1)
def providers() -> dict[str, KmsProvider]:
    """Every configured provider by name (local always: older wraps may need it)."""
    keys, current = _local_keys()
    out: dict[str, KmsProvider] = {"local": LocalKms(keys, current)}
    if settings.KMS_PROVIDER == "aws" or settings.KMS_AWS_KEY_ID:
        out["aws"] = AwsKms(
            settings.KMS_AWS_KEY_ID,
            settings.KMS_AWS_ENDPOINT_URL or None,
            settings.KMS_AWS_REGION,
        )
    return out


def provider() -> KmsProvider:
    """The provider new data keys are wrapped with (KMS_PROVIDER)."""
    return providers()[settings.KMS_PROVIDER]


def unwrap(blob: bytes, key_id: str) -> bytes:
    """Open a wrapped key. A key id this process does not know yet (another
    process rotated to a new local key) reloads the providers once."""
    for attempt in (1, 2):
        name = key_id.partition(":")[0]
        found = providers().get(name)
        try:
            if found is None:
                raise ImproperlyConfigured(f"no KMS provider {name!r} for {key_id!r}")
            return found.unwrap(blob, key_id)
        except ImproperlyConfigured:
            if attempt == 2:
                raise
            providers.cache_clear()
    raise AssertionError("unreachable")
