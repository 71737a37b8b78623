"""Writes for users: signup, login, settings. Every function validates, then acts."""

from __future__ import annotations

import secrets
import uuid
import zoneinfo
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from knox.models import AuthToken
from knox.settings import CONSTANTS

from audit.services import audit_record
from kimberly import rls
from kimberly.api.errors import (
    ApplicationError,
    NotFound,
    ValidationFailed,
    invalid_field,
)
from kimberly.api.ratelimit import rate_limit_hit
from kimberly.context import Actor, Context, RequestMeta
from kimberly.destinations import InvalidWebhookUrl, WebhookRefused, check_destination
from users import consents, metrics
from users.models import User, normalize_email


class EmailTaken(ApplicationError):
    code = "email_taken"
    status = 400


class InvalidCredentials(ApplicationError):
    code = "invalid_credentials"
    status = 401


@dataclass(frozen=True)
class IssuedToken:
    user: User
    token: str
    expires_in: int


def _issue_token(user: User) -> IssuedToken:
    _, token = AuthToken.objects.create(user=user)
    return IssuedToken(user=user, token=token, expires_in=settings.TOKEN_TTL_SECONDS)


@transaction.atomic
def user_password_set(*, user: User, password: str, how: str, meta: RequestMeta) -> int:
    """A new password (`how`: change, or reset by an emailed link; the form has
    validated it): every API token of the user dies with the old one, so a reset
    also locks out whoever held a token. Audited; returns the tokens revoked."""
    user.set_password(password)
    user.save(update_fields=["password"])
    revoked, _ = AuthToken.objects.filter(user=user).delete()
    audit_record(
        ctx=Context(Actor("user", str(user.pk)), meta),
        action=f"auth.password_{how}",
        user_id=user.pk,
        target_type="user",
        target_id=str(user.pk),
        details={"tokens_revoked": revoked},
    )
    return int(revoked)


def user_register(*, email: str, password: str, meta: RequestMeta) -> User:
    """Create an account (no token: the web UI signs in with a session);
    400 email_taken / weak_password, 429 per IP."""
    rate_limit_hit(
        scope="signup_ip",
        ident=meta.ip,
        limit=settings.SIGNUP_RATE_PER_IP,
        window_seconds=settings.LOGIN_RATE_WINDOW_SECONDS,
    )
    email = normalize_email(email)
    try:
        validate_password(password, user=User(email=email))
    except DjangoValidationError as exc:
        raise ValidationFailed(
            "The password is too weak.",
            code="weak_password",
            details={"password": list(exc.messages)},
        ) from None
    with rls.maintenance("signup: is the email taken by any account"):
        taken = User.objects.filter(email__iexact=email).exists()
    if taken:
        raise EmailTaken("An account with this email already exists.")
    user_id = uuid.uuid4()  # known before the INSERT: the row must be its own
    try:
        with rls.acting_user(user_id), transaction.atomic():
            user = User.objects.create_user(email=email, password=password, id=user_id)
            audit_record(
                ctx=Context(Actor("user", str(user.pk)), meta),
                action="auth.signup",
                user_id=user.pk,
                target_type="user",
                target_id=str(user.pk),
            )
    except IntegrityError:
        # Lost a race with a concurrent signup for the same address.
        raise EmailTaken("An account with this email already exists.") from None
    return user


def user_signup(*, email: str, password: str, meta: RequestMeta) -> IssuedToken:
    """Create an account and its first token (user_register's errors)."""
    with transaction.atomic():
        user = user_register(email=email, password=password, meta=meta)
        with rls.acting_user(user.pk):
            return _issue_token(user)


def user_authenticate(*, email: str, password: str, meta: RequestMeta) -> User:
    """The user these credentials belong to, the login audited (the web UI then
    opens a session); 401 invalid_credentials, throttled per IP and email (429)."""
    window = settings.LOGIN_RATE_WINDOW_SECONDS
    email = normalize_email(email)
    rate_limit_hit(
        scope="login_ip",
        ident=meta.ip,
        limit=settings.LOGIN_RATE_PER_IP,
        window_seconds=window,
    )
    rate_limit_hit(
        scope="login_email",
        ident=email,
        limit=settings.LOGIN_RATE_PER_EMAIL,
        window_seconds=window,
    )
    with rls.maintenance("login: find the account by its email"):
        user = authenticate(username=email, password=password)
        if user is None:
            known = User.objects.filter(email=email).values_list("pk", flat=True)
            _login_failed(known.first(), meta)
    if user is None:
        metrics.logins.labels(result="failed").inc()
        raise InvalidCredentials("Email or password is wrong.")
    assert isinstance(user, User)
    metrics.logins.labels(result="ok").inc()
    with rls.acting_user(user.pk):
        audit_record(
            ctx=Context(Actor("user", str(user.pk)), meta),
            action="auth.login",
            user_id=user.pk,
            target_type="user",
            target_id=str(user.pk),
        )
    return user


def user_login(*, email: str, password: str, meta: RequestMeta) -> IssuedToken:
    """Exchange credentials for a token (user_authenticate's errors)."""
    # Not one transaction with the check: a refusal's audit event must stay.
    user = user_authenticate(email=email, password=password, meta=meta)
    with rls.acting_user(user.pk):
        return _issue_token(user)


def _login_failed(known: uuid.UUID | None, meta: RequestMeta) -> None:
    audit_record(
        ctx=Context(Actor("anonymous", ""), meta),
        action="auth.login_failed",
        user_id=known,
        target_type="user",
        target_id=str(known or ""),
    )


@dataclass(frozen=True)
class SettingsChange:
    """The user after a settings change, and the webhook secret when this change
    made one (the only time it is ever shown)."""

    user: User
    webhook_secret: str | None = None


@transaction.atomic
def user_update_settings(
    *,
    ctx: Context,
    user: User,
    embedding_enabled: bool | None = None,
    consent_telemetry: bool | None = None,
    memory_auto_accept: bool | None = None,
    meditation_weights: Any = None,
    time_zone: str | None = None,
    webhook_url: str | None = None,
    rotate_webhook_secret: bool = False,
) -> SettingsChange:
    """Change the user's own settings; fields left as None are unchanged. A new
    webhook URL, or rotate_webhook_secret, makes a new webhook secret; an empty
    URL removes the webhook and its secret. Invalid input changes nothing."""
    values: dict[str, Any] = {
        "embedding_enabled": embedding_enabled,
        "memory_auto_accept": memory_auto_accept,
    }
    if time_zone is not None:
        values["time_zone"] = _checked_time_zone(time_zone)
    if webhook_url is not None:
        values["webhook_url"] = _checked_webhook_url(webhook_url)
    if meditation_weights is not None:
        from users.preferences import normalize_weights

        values["meditation_weights"] = normalize_weights(meditation_weights)
    url = values.get("webhook_url", user.webhook_url)
    if rotate_webhook_secret and not url:
        raise invalid_field(
            "rotate_webhook_secret", "there is no webhook_url to sign for"
        )
    changed = [
        name
        for name, value in values.items()
        if value is not None
        and (value != getattr(user, name) or name == "meditation_weights")
    ]
    for name in changed:
        setattr(user, name, values[name])
    secret = None
    if url and ("webhook_url" in changed or rotate_webhook_secret):
        secret = user.webhook_secret = secrets.token_urlsafe(32)
        changed.append("webhook_secret")
    elif "webhook_url" in changed:  # removed: its secret goes with it
        user.webhook_secret = ""
        changed.append("webhook_secret")
    if consent_telemetry is not None:  # the ledger's, the flag follows it
        change = (
            consents.consent_grant if consent_telemetry else consents.consent_withdraw
        )
        change(
            ctx=ctx, user=user, purpose=consents.Purpose.TELEMETRY, source="settings"
        )
    if changed:
        user.save(update_fields=changed)
        audit_record(
            ctx=ctx,
            action="settings.change",
            user_id=user.pk,
            target_type="user",
            target_id=str(user.pk),
            details={name: _audited(user, name) for name in changed},
        )
    return SettingsChange(user=user, webhook_secret=secret)


def _audited(user: User, name: str) -> Any:
    """A setting's new value as the audit log keeps it: a webhook URL by its host
    only (its path or query often is a credential), the secret never."""
    if name == "webhook_url":
        return urlsplit(user.webhook_url).hostname or ""
    if name == "webhook_secret":
        return "generated" if user.webhook_secret else "removed"
    return getattr(user, name)


@cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def time_zone_names() -> list[str]:
    """Every time zone a user may choose, sorted (what _checked_time_zone accepts)."""
    return sorted(_time_zones())


def _checked_time_zone(name: str) -> str:
    if name not in _time_zones():
        raise invalid_field(
            "time_zone",
            "must be an IANA time zone name such as Europe/Paris (case matters)",
            code="invalid_time_zone",
        )
    return name


def _checked_webhook_url(url: str) -> str:
    """'' (no webhook) or a URL the agents' webhook policy allows now; the policy
    is checked again at every delivery."""
    if not url:
        return ""
    try:
        check_destination(url, allow_private=settings.AGENT_WEBHOOK_ALLOW_PRIVATE)
    except (InvalidWebhookUrl, WebhookRefused) as exc:
        raise type(exc)(
            f"webhook_url: {exc.message}",
            details={"fields": {"webhook_url": [exc.message]}},
        ) from None
    return url


@transaction.atomic
def api_token_create(*, ctx: Context, user: User) -> IssuedToken:
    """A new bearer token for the API (Settings): the token itself is in the
    answer only; knox keeps its hash. Audited by its key (the first characters)."""
    issued = _issue_token(user)
    audit_record(
        ctx=ctx,
        action="auth.token_create",
        user_id=user.pk,
        target_type="token",
        target_id=issued.token[: CONSTANTS.TOKEN_KEY_LENGTH],
    )
    return issued


@transaction.atomic
def api_token_revoke(*, ctx: Context, user: User, token_key: str) -> None:
    """Revoke one of the user's tokens by its key; 404 token_not_found if none."""
    deleted, _ = AuthToken.objects.filter(user=user, token_key=token_key).delete()
    if not deleted:
        raise NotFound(f"No token {token_key[:16]}.", code="token_not_found")
    audit_record(
        ctx=ctx,
        action="auth.token_revoke",
        user_id=user.pk,
        target_type="token",
        target_id=token_key,
    )


def auth_tokens_purge_expired() -> int:
    """Delete expired bearer tokens (they already fail auth); returns how many."""
    deleted, _ = AuthToken.objects.filter(expiry__lt=timezone.now()).delete()
    return deleted


def user_ensure_demo(*, email: str, password: str) -> User:
    """Create the local demo user, or reset its password if it exists."""
    user, _ = User.objects.get_or_create(email=normalize_email(email))
    user.set_password(password)
    user.save(update_fields=["password"])
    return user
