"""Reads for users."""

from __future__ import annotations

import uuid

from django.db.models import Q, QuerySet
from django.utils import timezone
from knox.models import AuthToken

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


def api_tokens_for(*, user: User) -> QuerySet[AuthToken]:
    """The user's bearer tokens that still work, newest first (hashes only:
    a token itself is shown once, when it is made)."""
    works = Q(expiry__isnull=True) | Q(expiry__gt=timezone.now())
    live = AuthToken.objects.filter(works, user=user)
    return live.order_by("-created")
