"""Domain errors: each has a stable machine-readable code and an HTTP status."""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    """Base of every domain error; rendered as {error, message, code, details}."""

    code = "application_error"
    status = 400

    def __init__(
        self,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = headers or {}


class ValidationFailed(ApplicationError):
    code = "validation_error"
    status = 400


def invalid_field(
    field: str, message: str, *, code: str | None = None
) -> ValidationFailed:
    """A 400 that names one field (code `validation_error` unless given). The
    offending value is never echoed back: it may be huge, private, or not even
    encodable (a lone surrogate)."""
    return ValidationFailed(
        f"{field}: {message}", details={"fields": {field: [message]}}, code=code
    )


class BadRequest(ApplicationError):
    """A 400 for input that is well-formed but cannot be used; `code` says why."""

    code = "bad_request"
    status = 400


class NotFound(ApplicationError):
    code = "not_found"
    status = 404


class Conflict(ApplicationError):
    code = "conflict"
    status = 409


class RateLimited(ApplicationError):
    code = "rate_limited"
    status = 429

    def __init__(
        self, message: str, *, retry_after: int, details: dict[str, Any] | None = None
    ):
        super().__init__(
            message,
            details={"retry_after": retry_after, **(details or {})},
            headers={"Retry-After": str(retry_after)},
        )


class PayloadTooLarge(ApplicationError):
    code = "payload_too_large"
    status = 413


def check_upload_size(size: int, limit: int, what: str = "The file") -> None:
    """413 `payload_too_large` for an upload of `size` bytes over `limit`."""
    if size > limit:
        raise PayloadTooLarge(
            f"{what} is {size} bytes; the limit is {limit}.",
            details={"size_bytes": size, "max_bytes": limit},
        )
