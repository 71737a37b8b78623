from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from users.models import User
from users.tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

GOOD_PASSWORD = "a-long-enough-passphrase-42"


def _signup(
    api: APIClient, email: str = "new@example.com", password: str = GOOD_PASSWORD
):
    return api.post("/v1/signup", {"email": email, "password": password}, format="json")


def _login(api: APIClient, email: str, password: str, **extra):
    return api.post(
        "/v1/login", {"email": email, "password": password}, format="json", **extra
    )


def test_signup_returns_a_token_that_authenticates(api):
    resp = _signup(api)
    assert resp.status_code == 201
    body = resp.json()
    assert set(body) == {"token", "expires_in"}
    assert body["expires_in"] > 0
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {body['token']}")
    me = api.get("/v1/user")
    assert me.status_code == 200
    assert me.json()["email"] == "new@example.com"


def test_signup_with_taken_email_is_400_and_creates_nothing(api):
    UserFactory(email="taken@example.com")
    resp = _signup(api, email="Taken@Example.com")
    assert resp.status_code == 400
    assert resp.json()["error"] == "email_taken"
    assert User.objects.filter(email__iexact="taken@example.com").count() == 1


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"email": "not-an-email", "password": GOOD_PASSWORD}, "email"),
        ({"email": "a@example.com"}, "password"),
        ({"password": GOOD_PASSWORD}, "email"),
        ({"email": "a@example.com", "password": GOOD_PASSWORD, "admin": True}, "admin"),
    ],
)
def test_signup_with_bad_input_is_400_naming_the_field(api, payload, field):
    resp = api.post("/v1/signup", payload, format="json")
    assert resp.status_code == 400
    body = resp.json()
    assert body["error"] == "validation_error"
    assert body["code"] == 400
    assert field in body["details"]["fields"]
    assert not User.objects.exists()


def test_signup_with_weak_password_is_400_weak_password(api):
    resp = _signup(api, password="12345678")
    assert resp.status_code == 400
    assert resp.json()["error"] == "weak_password"
    assert not User.objects.exists()


def test_malformed_json_is_400_malformed_request(api):
    resp = api.generic(
        "POST", "/v1/signup", "{not json", content_type="application/json"
    )
    assert resp.status_code == 400
    assert resp.json()["error"] == "malformed_request"


def test_login_returns_a_fresh_token(api):
    user = UserFactory(email="carol@example.com")
    resp = _login(api, "CAROL@example.com", DEFAULT_PASSWORD)
    assert resp.status_code == 200
    assert set(resp.json()) == {"token", "expires_in"}
    assert AuthToken.objects.filter(user=user).count() == 1


def test_login_with_wrong_password_is_401(api):
    UserFactory(email="carol@example.com")
    resp = _login(api, "carol@example.com", "wrong password")
    assert resp.status_code == 401
    assert resp.json()["error"] == "invalid_credentials"
    assert not AuthToken.objects.exists()


def test_login_with_unknown_email_is_the_same_401(api):
    resp = _login(api, "nobody@example.com", "whatever")
    assert resp.status_code == 401
    assert resp.json()["error"] == "invalid_credentials"


def test_inactive_user_cannot_log_in(api):
    UserFactory(email="gone@example.com", is_active=False)
    assert _login(api, "gone@example.com", DEFAULT_PASSWORD).status_code == 401


@override_settings(LOGIN_RATE_PER_EMAIL=3, LOGIN_RATE_PER_IP=100)
def test_login_is_throttled_per_email_with_retry_after(api):
    UserFactory(email="carol@example.com")
    for _ in range(3):
        assert _login(api, "carol@example.com", "bad").status_code == 401
    resp = _login(api, "carol@example.com", DEFAULT_PASSWORD)
    assert resp.status_code == 429
    assert resp.json()["error"] == "rate_limited"
    assert 1 <= int(resp["Retry-After"]) <= 60
    # Another account from the same IP is unaffected.
    UserFactory(email="dave@example.com")
    assert _login(api, "dave@example.com", DEFAULT_PASSWORD).status_code == 200


@override_settings(LOGIN_RATE_PER_EMAIL=100, LOGIN_RATE_PER_IP=4)
def test_login_is_throttled_per_ip(api):
    for i in range(4):
        assert (
            _login(api, f"u{i}@example.com", "bad", REMOTE_ADDR="10.0.0.7").status_code
            == 401
        )
    resp = _login(api, "u9@example.com", "bad", REMOTE_ADDR="10.0.0.7")
    assert resp.status_code == 429
    assert int(resp["Retry-After"]) >= 1
    # A different client address still gets through.
    assert (
        _login(api, "u9@example.com", "bad", REMOTE_ADDR="10.0.0.8").status_code == 401
    )


def test_missing_token_is_401_with_bearer_challenge(api):
    resp = api.get("/v1/user")
    assert resp.status_code == 401
    assert resp.json()["error"] == "not_authenticated"
    assert resp["WWW-Authenticate"].startswith("Bearer")


def test_bad_token_is_401(api):
    api.credentials(HTTP_AUTHORIZATION="Bearer " + "0" * 64)
    resp = api.get("/v1/user")
    assert resp.status_code == 401
    assert resp.json()["error"] == "authentication_failed"


def test_expired_token_is_401(api, alice):
    instance, token = AuthToken.objects.create(user=alice, expiry=timedelta(seconds=60))
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api.get("/v1/user").status_code == 200
    AuthToken.objects.filter(pk=instance.pk).update(
        expiry=timezone.now() - timedelta(seconds=1)
    )
    resp = api.get("/v1/user")
    assert resp.status_code == 401
    assert resp.json()["error"] == "authentication_failed"


def test_user_can_read_and_change_own_settings(alice_api, alice):
    body = alice_api.get("/v1/user").json()
    assert body["embedding_enabled"] is True
    assert body["consent_telemetry"] is False
    resp = alice_api.put(
        "/v1/user",
        {"embedding_enabled": False, "consent_telemetry": True},
        format="json",
    )
    assert resp.status_code == 200
    alice.refresh_from_db()
    assert alice.embedding_enabled is False
    assert alice.consent_telemetry is True


def test_bad_settings_are_400_and_change_nothing(alice_api, alice):
    resp = alice_api.put(
        "/v1/user",
        {"embedding_enabled": "perhaps", "consent_telemetry": True},
        format="json",
    )
    assert resp.status_code == 400
    assert "embedding_enabled" in resp.json()["details"]["fields"]
    alice.refresh_from_db()
    assert alice.consent_telemetry is False


def test_user_cannot_change_email_through_settings(alice_api, alice):
    resp = alice_api.put("/v1/user", {"email": "evil@example.com"}, format="json")
    assert resp.status_code == 400
    alice.refresh_from_db()
    assert alice.email == "alice@example.com"


def test_each_user_sees_only_themselves(alice_api, bob_api):
    assert alice_api.get("/v1/user").json()["email"] == "alice@example.com"
    assert bob_api.get("/v1/user").json()["email"] == "bob@example.com"


def _admin_client(client):
    admin = User.objects.create_superuser(email="root@example.com", password="x")
    client.force_login(admin)
    return client


def test_a_user_added_in_the_admin_with_a_mixed_case_email_can_log_in(client, api):
    resp = _admin_client(client).post(
        "/admin/users/user/add/",
        {
            "email": "Dana.Smith@Example.COM",
            "usable_password": "true",
            "password1": GOOD_PASSWORD,
            "password2": GOOD_PASSWORD,
        },
    )
    assert resp.status_code == 302, resp.content.decode()[-2000:]
    assert User.objects.filter(email="dana.smith@example.com").exists()
    assert _login(api, "Dana.Smith@Example.COM", GOOD_PASSWORD).status_code == 200
    assert _login(api, "dana.smith@example.com", GOOD_PASSWORD).status_code == 200


def test_an_email_changed_in_the_admin_to_mixed_case_still_logs_in(client, api):
    user = User.objects.create_user(email="erin@example.com", password=DEFAULT_PASSWORD)
    resp = _admin_client(client).post(
        f"/admin/users/user/{user.pk}/change/",
        {
            "email": "Erin.New@Example.com",
            "embedding_enabled": "on",
            "is_active": "on",
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
        },
    )
    assert resp.status_code == 302, resp.content.decode()[-2000:]
    assert _login(api, "erin.new@example.com", DEFAULT_PASSWORD).status_code == 200


def test_the_admin_refuses_an_email_that_differs_from_a_taken_one_only_in_case(
    client,
):
    UserFactory(email="carol@example.com")
    resp = _admin_client(client).post(
        "/admin/users/user/add/",
        {
            "email": "Carol@Example.com",
            "usable_password": "true",
            "password1": GOOD_PASSWORD,
            "password2": GOOD_PASSWORD,
        },
    )
    assert resp.status_code == 200  # the form again, with the error
    assert "already exists" in resp.content.decode()
    assert User.objects.filter(email__iexact="carol@example.com").count() == 1


def test_createsuperuser_with_a_mixed_case_email_can_log_in(api, monkeypatch):
    from django.core.management import call_command

    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", GOOD_PASSWORD)
    call_command("createsuperuser", email="Root.Two@Example.com", interactive=False)
    assert _login(api, "ROOT.TWO@example.com", GOOD_PASSWORD).status_code == 200


def test_createsuperuser_refuses_a_taken_email_in_other_case(monkeypatch):
    from django.core.management import CommandError, call_command

    UserFactory(email="carol@example.com")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", GOOD_PASSWORD)
    with pytest.raises(CommandError, match="already taken"):
        call_command("createsuperuser", email="Carol@Example.com", interactive=False)
    assert User.objects.count() == 1


def test_accounts_stored_with_a_mixed_case_email_are_repaired_and_can_log_in(api):
    import importlib

    from django.apps import apps

    user = User.objects.create_user(email="fay@example.com", password=DEFAULT_PASSWORD)
    User.objects.filter(pk=user.pk).update(email="Fay@Example.com")  # as before
    migration = importlib.import_module("users.migrations.0003_lowercase_emails")
    migration.lowercase_emails(apps, None)
    assert _login(api, "Fay@Example.com", DEFAULT_PASSWORD).status_code == 200
