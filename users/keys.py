"""Per-user data keys and what is sealed with them (envelope encryption).

Each user has a data key (AES-256, made on first use), stored only wrapped by a
key-encryption key of the KMS (kimberly/kms.py). `seal(user, plaintext)` is
AES-256-GCM under it: `b"K1" | version (4 bytes) | nonce (12) | ciphertext+tag`,
with the user's id as associated data, so a blob moved to another user's row
does not open. `keys_rotate` re-wraps every data key under the current KEK
without touching what they sealed; `data_keys_destroy` (account erasure) makes
all of it unreadable for good, wherever a copy survives (crypto-shredding).

Unwrapped keys (and which version is current) are cached in the process for
KEY_CACHE_SECONDS, so a page of memories costs one KMS call and one query, not
one each. An erasure clears this process's cache at once; another process may
still hold an erased user's key for up to KEY_CACHE_SECONDS (in memory only: a
backup or a copied blob is unreadable as soon as the row is gone).
"""

from __future__ import annotations

import secrets
import struct
import time
import uuid
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
# (user id, version) -> (expiry, DataKey pk, key). The pk tells a committed row
# from one a rolled-back transaction made (its pk is never used again), so a
# key that never reached the database is never used to seal.
_cache: dict[tuple[str, int], tuple[float, int, bytes]] = {}
# user id -> (expiry, version, pk) of the current key, set once committed.
_current_version: dict[str, tuple[float, int, int]] = {}
# A user, or the id of one (what a row loaded without its user has).
Owner = User | uuid.UUID | str


class KeyUnavailable(ApplicationError):
    """The data key is gone (erased) or cannot be unwrapped."""

    code = "key_unavailable"
    status = 500


def _uid(owner: Owner) -> str:
    return str(owner.pk if isinstance(owner, User) else owner)


def _aad(user_id: str) -> bytes:
    return user_id.encode()


def _cached(user_id: str, version: int, pk: int | None = None) -> bytes | None:
    hit = _cache.get((user_id, version))
    if hit is None or hit[0] <= time.monotonic() or pk not in (None, hit[1]):
        return None
    return hit[2]


def _unwrapped(row: DataKey) -> bytes:
    key = _cached(str(row.user_id), row.version, row.pk)
    if key is None:
        key = kms.unwrap(bytes(row.wrapped), row.kek_id)
        expiry = time.monotonic() + KEY_CACHE_SECONDS
        _cache[(str(row.user_id), row.version)] = (expiry, row.pk, key)
    return key


def _current(user_id: str) -> DataKey:
    row = DataKey.objects.filter(user_id=user_id).order_by("-version").first()
    if row is not None:
        return row
    provider = kms.provider()
    try:
        with transaction.atomic():
            return DataKey.objects.create(
                user_id=user_id,
                version=1,
                wrapped=provider.wrap(secrets.token_bytes(32)),
                kek_id=provider.key_id,
            )
    except IntegrityError:  # made meanwhile by another request
        return DataKey.objects.get(user_id=user_id, version=1)


def _current_key(user_id: str) -> tuple[int, bytes]:
    """(version, key) of the user's current data key, from the cache when fresh."""
    hit = _current_version.get(user_id)
    if hit and hit[0] > time.monotonic():
        key = _cached(user_id, hit[1], hit[2])
        if key is not None:
            return hit[1], key
    row = _current(user_id)
    key = _unwrapped(row)
    entry = (time.monotonic() + KEY_CACHE_SECONDS, row.version, row.pk)
    transaction.on_commit(lambda: _current_version.__setitem__(user_id, entry))
    return row.version, key


def seal(user: Owner, plaintext: str) -> bytes:
    """`plaintext` encrypted under the user's current data key."""
    user_id = _uid(user)
    version, key = _current_key(user_id)
    nonce = secrets.token_bytes(NONCE)
    sealed = AESGCM(key).encrypt(nonce, plaintext.encode(), _aad(user_id))
    return HEADER.pack(MAGIC, version) + nonce + sealed


def key_version(blob: bytes) -> int:
    magic, version = HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise KeyUnavailable("Not a sealed value.")
    return int(version)


def unseal(user: Owner, blob: bytes) -> str:
    """The plaintext of `blob` (KeyUnavailable when the key is gone)."""
    user_id, version = _uid(user), key_version(blob)
    start = HEADER.size
    nonce, sealed = blob[start : start + NONCE], blob[start + NONCE :]
    key = _cached(user_id, version)
    if key is not None:
        try:  # a stale cached key fails the tag: then ask the database
            return AESGCM(key).decrypt(nonce, sealed, _aad(user_id)).decode()
        except InvalidTag:
            _cache.pop((user_id, version), None)
    row = DataKey.objects.filter(user_id=user_id, version=version).first()
    if row is None:
        raise KeyUnavailable(f"The data key v{version} of this user is gone.")
    try:
        return AESGCM(_unwrapped(row)).decrypt(nonce, sealed, _aad(user_id)).decode()
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
    cache_clear(user.pk)
    return n


def cache_clear(user_id: uuid.UUID | str | None = None) -> None:
    """Forget this process's cached keys (of one user, or of all)."""
    if user_id is None:
        _cache.clear()
        _current_version.clear()
        return
    for cache_key in [k for k in _cache if k[0] == str(user_id)]:
        del _cache[cache_key]
    _current_version.pop(str(user_id), None)
