"""Object storage: the one module apps use to keep files (attachments, transcripts,
imports, exports), on django-storages' S3 backend (kimberly/settings/storage.py).

Every object of a user lives under `users/<user_id>/<kind>/`, so erasing a user
is one `delete_prefix`. Objects are private (no ACL, never a public bucket):
clients download through `signed_url` (a presigned GET that expires) or through
an authenticated view that streams `open(key)`. Failures are ApplicationErrors:
StorageNotConfigured (no bucket), StorageUnavailable (S3 unreachable, refused the
credentials, ...), ObjectNotFound.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any, cast

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.utils.http import content_disposition_header
from storages.utils import clean_name

from kimberly.api.errors import ApplicationError, NotFound

logger = logging.getLogger(__name__)

KINDS = frozenset({"attachments", "transcripts", "imports", "exports"})
# S3 deletes at most this many keys per request (and lists as many per page).
_BATCH = 1000


class StorageNotConfigured(ApplicationError):
    code = "storage_not_configured"
    status = 503


class StorageUnavailable(ApplicationError):
    code = "storage_unavailable"
    status = 503


class ObjectNotFound(NotFound):
    code = "object_not_found"


def _segments(path: str, what: str) -> list[str]:
    parts = path.split("/")
    for part in parts:
        if part in {"", ".", ".."} or any(ord(c) < 32 or c == "\\" for c in part):
            raise ValueError(f"bad object {what}: {path!r}")
    return parts


def user_prefix(user_id: object, kind: str | None = None) -> str:
    """`users/<user_id>/`, or with `kind` `users/<user_id>/<kind>/`."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown object kind {kind!r}; one of {sorted(KINDS)}")
    prefix = f"users/{user_id}/" + (f"{kind}/" if kind else "")
    _segments(prefix[:-1], "prefix")
    return prefix


def user_key(user_id: object, kind: str, name: str) -> str:
    """`users/<user_id>/<kind>/<name>`; `name` is one path segment (no slash)."""
    if "/" in name:
        raise ValueError(f"an object name is one path segment: {name!r}")
    key = user_prefix(user_id, kind) + name
    _segments(key, "key")
    return key


def _storage() -> Any:
    """The S3 backend (untyped: boto3 ships no types), refusing without a bucket."""
    if not getattr(default_storage, "bucket_name", None):
        raise StorageNotConfigured(
            "no object storage bucket is configured: set AWS_STORAGE_BUCKET_NAME "
            "(and AWS_S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), "
            "or run under `python -m kimberly.runtime exec` for the embedded S3"
        )
    return default_storage


def _name(key: str) -> str:
    """The bucket key of `key` (after the storage's location prefix, if any).

    Also the validation of every key and prefix a caller passes in."""
    _segments(key.removesuffix("/"), "key")
    return str(_storage()._normalize_name(clean_name(key)))


def _is_missing(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status == 404 and error.get("Code") in {"404", "NoSuchKey", "NotFound"}


@contextmanager
def _errors(key: str) -> Iterator[None]:
    """Translate boto errors into ApplicationErrors (the cause is chained and logged)."""
    try:
        yield
    except FileNotFoundError as exc:
        raise ObjectNotFound(f"no object {key}") from exc
    except ClientError as exc:
        if _is_missing(exc):
            raise ObjectNotFound(f"no object {key}") from exc
        logger.warning("object storage refused a request: %s", exc)
        raise StorageUnavailable(f"object storage refused the request: {exc}") from exc
    except BotoCoreError as exc:
        logger.warning("object storage is unreachable: %s", exc)
        raise StorageUnavailable(f"object storage is unreachable: {exc}") from exc


class _Upload(File):
    """A file with the content type the S3 backend stores with it."""

    def __init__(self, fileobj: IO[bytes], content_type: str) -> None:
        super().__init__(fileobj)
        self.content_type = content_type


def put_file(key: str, fileobj: IO[bytes], content_type: str) -> None:
    """Store `fileobj` at exactly `key`, replacing any object there.

    Not the storage's save(): with file_overwrite off it would pick another name.
    """
    storage = _storage()
    _name(key)
    with _errors(key):
        storage._save(key, _Upload(fileobj, content_type))


def put_bytes(key: str, data: bytes, content_type: str) -> None:
    """Store `data` at exactly `key`, replacing any object there."""
    import io

    put_file(key, io.BytesIO(data), content_type)


def read_bytes(key: str) -> bytes:
    """The whole object (ObjectNotFound when there is none)."""
    with open(key) as body, _errors(key):
        return body.read()


def open(key: str) -> IO[bytes]:
    """A stream of the object's bytes, read from S3 as it is consumed (close it)."""
    name = _name(key)
    with _errors(key):
        body = _storage().bucket.Object(name).get()["Body"]
    return cast(IO[bytes], body)


def delete(key: str) -> None:
    """Delete the object at `key`; no object there is not an error."""
    storage = _storage()
    _name(key)
    with _errors(key):
        storage.delete(key)


def _pages(storage: Any, full: str) -> Iterator[dict[str, Any]]:
    """The bucket's listing under the storage name `full`, a page at a time
    (call inside `_errors`)."""
    client = storage.connection.meta.client
    yield from client.get_paginator("list_objects_v2").paginate(
        Bucket=storage.bucket_name,
        Prefix=full,
        PaginationConfig={"PageSize": _BATCH},
    )


def delete_prefix(prefix: str) -> int:
    """Delete every object under `prefix` (e.g. user_prefix(id)); how many there were.

    The prefix ends with "/" and has at least two segments, so no call can empty
    the bucket or catch `users/12/` in `users/1`.
    """
    if not prefix.endswith("/") or len(_segments(prefix[:-1], "prefix")) < 2:
        raise ValueError(f"delete_prefix needs a prefix like 'users/<id>/': {prefix!r}")
    storage = _storage()
    full = _name(prefix)
    client = storage.connection.meta.client
    deleted = 0
    with _errors(prefix):
        for page in _pages(storage, full):
            objects = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if not objects:
                continue
            resp = client.delete_objects(
                Bucket=storage.bucket_name, Delete={"Objects": objects, "Quiet": True}
            )
            if errors := resp.get("Errors"):
                raise StorageUnavailable(
                    f"object storage kept {len(errors)} objects under {prefix}",
                    details={"first_error": errors[0].get("Code")},
                )
            deleted += len(objects)
    return deleted


def signed_url(key: str, *, filename: str, expires: int | None = None) -> str:
    """A presigned GET of `key` that downloads as `filename` and expires after
    `expires` seconds (default STORAGE_URL_EXPIRE_SECONDS)."""
    expires = settings.STORAGE_URL_EXPIRE_SECONDS if expires is None else expires
    if expires <= 0:
        raise ValueError("a signed URL must expire after a positive number of seconds")
    storage = _storage()
    _name(key)
    disposition = content_disposition_header(as_attachment=True, filename=filename)
    with _errors(key):
        return str(
            storage.url(
                key,
                parameters={"ResponseContentDisposition": disposition},
                expire=expires,
            )
        )


def ping() -> None:
    """Read-only reachability: the bucket exists and takes our credentials (HEAD)."""
    storage = _storage()
    with _errors(storage.bucket_name):
        storage.connection.meta.client.head_bucket(Bucket=storage.bucket_name)


def check() -> dict[str, object]:
    """Write, read back and delete a probe object; raise if any step fails."""
    storage = _storage()
    key = f"health/check-{uuid.uuid4().hex}"
    payload = f"kimberly storage check {key}".encode()
    started = time.perf_counter()
    put_bytes(key, payload, "text/plain")
    try:
        if read_bytes(key) != payload:
            raise StorageUnavailable("object storage returned other bytes than written")
    finally:
        delete(key)
    return {
        "bucket": storage.bucket_name,
        "endpoint": storage.endpoint_url or "AWS S3 (the region's endpoint)",
        "location": storage.location,
        "ok": True,
        "ms": round((time.perf_counter() - started) * 1000, 1),
    }


def list_prefix(prefix: str) -> dict[str, int]:
    """Every object under `prefix` ("backups/"): its key (as callers name it,
    without the storage's location) and size in bytes. Lists, reads no object."""
    if not prefix.endswith("/"):
        raise ValueError(f"list_prefix needs a prefix ending with '/': {prefix!r}")
    storage = _storage()
    full = _name(prefix)
    base = full[: len(full) - len(prefix)]
    found: dict[str, int] = {}
    with _errors(prefix):
        for page in _pages(storage, full):
            for obj in page.get("Contents", []):
                found[obj["Key"][len(base) :]] = int(obj["Size"])
    return found


def count_prefix(prefix: str) -> int:
    """How many objects are under `prefix` (a probe: lists, reads no object)."""
    if not prefix.endswith("/") or len(_segments(prefix[:-1], "prefix")) < 2:
        raise ValueError(f"count_prefix needs a prefix like 'users/<id>/': {prefix!r}")
    storage = _storage()
    count = 0
    with _errors(prefix):
        for page in _pages(storage, _name(prefix)):
            count += int(page.get("KeyCount", len(page.get("Contents", []))))
    return count
