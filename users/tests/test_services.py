from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from knox.models import AuthToken

from kimberly.context import RequestMeta
from users import services
from users.models import User

pytestmark = pytest.mark.django_db


def test_signup_normalizes_email_and_hashes_password():
    issued = services.user_signup(
        email="  Mixed@Example.COM ",
        password="a-long-enough-passphrase-42",
        meta=RequestMeta(ip="127.0.0.1"),
    )
    user = User.objects.get()
    assert user.email == "mixed@example.com"
    assert user.password != "a-long-enough-passphrase-42"
    assert user.check_password("a-long-enough-passphrase-42")
    assert issued.user == user


def test_register_and_authenticate_issue_no_token_and_audit_both():
    """The web UI's way in: a session, not a bearer token."""
    from audit.models import AuditEvent

    meta = RequestMeta(ip="127.0.0.1")
    user = services.user_register(
        email="web@example.com", password="a-long-enough-passphrase-42", meta=meta
    )
    assert (
        services.user_authenticate(
            email="WEB@example.com", password="a-long-enough-passphrase-42", meta=meta
        )
        == user
    )
    with pytest.raises(services.InvalidCredentials):
        services.user_authenticate(email="web@example.com", password="no", meta=meta)
    assert not AuthToken.objects.exists()
    actions = AuditEvent.objects.filter(user_id=user.pk).values_list(
        "action", flat=True
    )
    assert sorted(actions) == ["auth.login", "auth.login_failed", "auth.signup"]


def test_purge_expired_tokens_removes_only_expired(alice):
    live, _ = AuthToken.objects.create(user=alice, expiry=timedelta(hours=1))
    dead, _ = AuthToken.objects.create(user=alice, expiry=timedelta(hours=1))
    AuthToken.objects.filter(pk=dead.pk).update(
        expiry=timezone.now() - timedelta(seconds=1)
    )
    assert services.auth_tokens_purge_expired() == 1
    assert list(AuthToken.objects.values_list("pk", flat=True)) == [live.pk]


def test_demo_user_is_created_once_and_can_log_in():
    services.user_ensure_demo(
        email="demo@kimberly.local", password="kimberly-demo-pass"
    )
    services.user_ensure_demo(
        email="demo@kimberly.local", password="kimberly-demo-pass"
    )
    assert User.objects.count() == 1
    issued = services.user_login(
        email="demo@kimberly.local",
        password="kimberly-demo-pass",
        meta=RequestMeta(ip="127.0.0.1"),
    )
    assert issued.token
