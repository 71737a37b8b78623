"""Bearer tokens (knox: hashed at rest, with expiry) on every authenticated endpoint."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from knox.auth import TokenAuthentication
from knox.models import AuthToken

from kimberly import rls


class BearerTokenAuthentication(TokenAuthentication):
    """`Authorization: Bearer <token>` (prefix from REST_KNOX.AUTH_HEADER_PREFIX);
    the rest of the request acts as the token's user (row-level security)."""

    def authenticate_credentials(self, token: bytes) -> tuple[object, AuthToken]:
        # The one lookup made before the user is known: the token's prefix
        # matches rows of any user, so it runs under a named maintenance scope.
        with rls.maintenance("bearer token: find its user"):
            user, auth_token = super().authenticate_credentials(token)
        rls.bind_user(user.pk)
        return user, auth_token

    def _cleanup_token(self, auth_token: AuthToken) -> bool:
        # knox's version loads every token of the user on every request to delete
        # the expired ones: O(logins) per request on the hot path. Only this
        # token's expiry matters here; users.tasks.purge_expired_tokens sweeps
        # the rest daily.
        if auth_token.expiry is not None and auth_token.expiry < timezone.now():
            auth_token.delete()
            return True
        return False


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "users.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer"}
