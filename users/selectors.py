"""Reads for users."""

from __future__ import annotations

import uuid

from kimberly.api.errors import NotFound
from users.models import User, normalize_email


def user_resolve(ident: str) -> User:
    """A user by id or email (operator commands); NotFound otherwise."""
    try:
        return User.objects.get(pk=uuid.UUID(ident))
    except ValueError:
        pass
    except User.DoesNotExist:
        raise NotFound(f"no user with id {ident}") from None
    try:
        return User.objects.get(email=normalize_email(ident))
    except User.DoesNotExist:
        raise NotFound(f"no user with email {ident}") from None
