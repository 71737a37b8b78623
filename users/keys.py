"""Per-user data keys and what is sealed with them (envelope encryption).

Each user has a data key (AES-256, made on first use), stored only wrapped by a
key-encryption key of the KMS (kimberly/kms.py). `seal(user, plaintext)` is
AES-256-GCM under it: `b"K1" | version (4 bytes) | nonce (12) | ciphertext+tag`,
with the user's id as associated data, so a blob moved to another user's row
does not open. `keys_rotate` re-wraps every data key under the current KEK
without touching what they sealed; `data_keys_destroy` (account erasure) makes
all of it unreadable for good, wherever a copy survives (crypto-shredding).

Unwrapped keys are cached in the process for KEY_CACHE_SECONDS, so a page of
memories costs one KMS call, not one each.
"""

from __future__ import annotations

import secrets
import struct
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.db import IntegrityError, transaction
from django.utils import timezone

from kimberly import kms
from kimberly.api.errors import ApplicationError
from users.models import DataKey, User

MAGIC = b"K1"
HEADER = struct.Struct(">2sI")  # magic, key version
NONCE = 12
KEY_CACHE_SECONDS = 60.0
_cache: dict[tuple[str, int], tuple[float, bytes]] = {}


class KeyUnavailable(ApplicationError):
    """The data key is gone (erased) or cannot be unwrapped."""

    code = "key_unavailable"
    status = 500


def _aad(user: User) -> bytes:
    return str(user.pk).encode()


def _unwrapped(row: DataKey) -> bytes:
    cache_key = (str(row.user_id), row.version)
    hit = _cache.get(cache_key)
    if hit and hit[0] > time.monotonic():
        return hit[1]
    key = kms.unwrap(bytes(row.wrapped), row.kek_id)
    _cache[cache_key] = (time.monotonic() + KEY_CACHE_SECONDS, key)
    return key


def _current(user: User) -> DataKey:
    row = DataKey.objects.filter(user=user).order_by("-version").first()
    if row is not None:
        return row
    provider = kms.provider()
    try:
        with transaction.atomic():
            return DataKey.objects.create(
                user=user,
                version=1,
                wrapped=provider.wrap(secrets.token_bytes(32)),
                kek_id=provider.key_id,
            )
    except IntegrityError:  # made meanwhile by another request
        return DataKey.objects.get(user=user, version=1)


def seal(user: User, plaintext: str) -> bytes:
    """`plaintext` encrypted under the user's current data key."""
    row = _current(user)
    nonce = secrets.token_bytes(NONCE)
    sealed = AESGCM(_unwrapped(row)).encrypt(nonce, plaintext.encode(), _aad(user))
    return HEADER.pack(MAGIC, row.version) + nonce + sealed


def key_version(blob: bytes) -> int:
    magic, version = HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise KeyUnavailable("Not a sealed value.")
    return int(version)


def unseal(user: User, blob: bytes) -> str:
    """The plaintext of `blob` (KeyUnavailable when the key is gone)."""
    version = key_version(blob)
    row = DataKey.objects.filter(user=user, version=version).first()
    if row is None:
        raise KeyUnavailable(f"The data key v{version} of this user is gone.")
    start = HEADER.size
    nonce, sealed = blob[start : start + NONCE], blob[start + NONCE :]
    try:
        return AESGCM(_unwrapped(row)).decrypt(nonce, sealed, _aad(user)).decode()
    except InvalidTag:
        raise KeyUnavailable("The value does not open with this user's key.") from None


@dataclass(frozen=True)
class Rotation:
    rewrapped: int
    kek_id: str  # what they are wrapped with now


def keys_rotate() -> Rotation:
    """Re-wrap every data key not yet under the current KEK (content untouched:
    each data key stays the same, only its wrapping changes)."""
    provider = kms.provider()
    done = 0
    stale = DataKey.objects.exclude(kek_id=provider.key_id).values_list("pk", flat=True)
    for pk in list(stale):
        with transaction.atomic():
            row = DataKey.objects.select_for_update().get(pk=pk)
            plain = kms.unwrap(bytes(row.wrapped), row.kek_id)
            row.wrapped, row.kek_id = provider.wrap(plain), provider.key_id
            row.rewrapped_at = timezone.now()
            row.save(update_fields=["wrapped", "kek_id", "rewrapped_at"])
            done += 1
    return Rotation(done, provider.key_id)


def data_keys_destroy(user: User) -> int:
    """Destroy the user's data keys (and this process's cached copies)."""
    n, _ = DataKey.objects.filter(user=user).delete()
    for cache_key in [k for k in _cache if k[0] == str(user.pk)]:
        del _cache[cache_key]
    return n
