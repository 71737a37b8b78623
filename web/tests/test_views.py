"""The UI's views through Django's test client: sessions, pages, fragments, errors."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client

from memory import selectors
from memory.tests.factories import memory_for
from users.models import User
from users.tests.factories import DEFAULT_PASSWORD
from web.tests.conftest import HX, said, text_of

pytestmark = pytest.mark.django_db

SCREENS = ["/", "/memory", "/chat", "/agents", "/insights", "/settings"]


# --- Signing in ------------------------------------------------------------------


def test_the_root_shows_the_sign_in_form_with_email_and_password_fields(client):
    page = text_of(client.get("/"))
    assert re.search(r'<label for="login-email">Email</label>', page)
    assert re.search(r'<label for="login-password">Password</label>', page)
    for name in ("Chat", "Memory", "Agents", "Metrics", "Settings"):
        assert f">{name}</a>" in page


def test_signing_up_opens_a_session_and_the_root_becomes_the_dashboard(client):
    response = client.post(
        "/signup", {"email": "new@example.com", "password": DEFAULT_PASSWORD}, **HX
    )
    assert response.status_code == 204
    assert response["HX-Redirect"] == "/"
    page = text_of(client.get("/"))
    assert "Welcome back" in page and "new@example.com" in page
    assert User.objects.filter(email="new@example.com").exists()


def test_a_weak_password_is_refused_in_words_with_its_code(client):
    response = client.post(
        "/signup", {"email": "new@example.com", "password": "12345678"}, **HX
    )
    assert response.status_code == 400
    assert 'data-error-code="weak_password"' in text_of(response)
    assert "too common" in text_of(response)
    assert said(response)["level"] == "error"
    assert not User.objects.filter(email="new@example.com").exists()


def test_a_wrong_password_is_401_and_a_right_one_signs_in(client, alice):
    wrong = client.post(
        "/login", {"email": alice.email, "password": "nope-nope-nope"}, **HX
    )
    assert wrong.status_code == 401
    assert "invalid_credentials" in text_of(wrong)
    right = client.post(
        "/login",
        {"email": alice.email, "password": DEFAULT_PASSWORD, "next": "/memory"},
        **HX,
    )
    assert right["HX-Redirect"] == "/memory"
    assert client.get("/memory").status_code == 200


def test_sign_in_never_redirects_to_another_site(client, alice):
    response = client.post(
        "/login",
        {
            "email": alice.email,
            "password": DEFAULT_PASSWORD,
            "next": "https://evil.example/",
        },
    )
    assert response.status_code == 302 and response["Location"] == "/"


def test_signing_out_ends_the_session(alice_web):
    assert alice_web.post("/logout").status_code == 302
    assert alice_web.get("/memory")["Location"].startswith("/login?next=/memory")


def test_a_session_does_not_authenticate_the_api(alice_web):
    """The API keeps bearer tokens: a session cookie (whose requests carry no
    CSRF check there) must not reach it."""
    assert alice_web.get("/v1/memory").status_code == 401
    assert alice_web.post("/v1/memory", {"type": "long-term"}).status_code == 401


def test_a_form_posted_without_the_csrf_token_is_refused(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post("/memory/add", {"tier": "long-term", "content": "x"})
    assert response.status_code == 403
    assert "csrf_failed" in text_of(response)
    assert not selectors.memory_list(user=alice, filters=selectors.MemoryFilters())


def test_password_reset_mails_a_link_that_sets_a_new_password(client, alice):
    client.post("/password/reset", {"email": alice.email})
    assert len(mail.outbox) == 1
    link = re.search(
        r"http://testserver(/password/reset/\S+)", str(mail.outbox[0].body)
    )
    assert link
    form = client.get(link.group(1), follow=True)
    new = "a whole new passphrase"
    client.post(
        form.redirect_chain[-1][0], {"new_password1": new, "new_password2": new}
    )
    alice.refresh_from_db()
    assert alice.check_password(new)


def test_reset_mails_are_limited_per_email(client, alice, settings):
    settings.PASSWORD_RESET_RATE = 2
    for _ in range(2):
        client.post("/password/reset", {"email": alice.email})
    refused = client.post("/password/reset", {"email": alice.email.upper()})
    assert refused.status_code == 429
    assert "rate_limited" in text_of(refused)
    assert len(mail.outbox) == 2


def test_password_change_needs_the_old_password(alice_web, alice):
    new = "another fine passphrase"
    response = alice_web.post(
        "/password/change",
        {"old_password": DEFAULT_PASSWORD, "new_password1": new, "new_password2": new},
    )
    assert response["Location"] == "/password/change/done"
    alice.refresh_from_db()
    assert alice.check_password(new)


# --- Pages: sign-in, CSP ------------------------------------------------------------


def test_anonymous_pages_redirect_to_sign_in_and_fragments_say_so(client, alice):
    item = memory_for(alice)
    assert client.get("/memory")["Location"] == "/login?next=/memory"
    fragment = client.get(f"/memory/{item.public_id}", **HX)
    assert fragment.status_code == 401 and fragment["HX-Redirect"] == "/login"
    assert item.content not in text_of(fragment)


@pytest.mark.parametrize("path", SCREENS)
def test_every_screen_has_a_strict_csp_and_no_inline_script_or_style(alice_web, path):
    response = alice_web.get(path)
    assert response.status_code == 200
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    assert "unsafe" not in csp
    page = text_of(response)
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page)
    assert not re.search(r"<style|\sstyle=|\son[a-z]+=|javascript:", page)


def test_the_api_docs_still_load_under_the_csp(client):
    response = client.get("/v1/docs")
    assert response.status_code == 200
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text_of(response))
