"""A new password, by change or by reset link, ends every API token of the
account and is audited; a search in the UI (a GET) counts as no use."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core import mail
from django.test import Client
from rest_framework.test import APIClient

from audit.models import AuditEvent
from memory.models import MemoryItem
from memory.retrieval.provenance import flush_retrieval_log
from memory.tests.factories import memory_for
from users.tests.factories import DEFAULT_PASSWORD

pytestmark = pytest.mark.django_db
HX = {"HTTP_HX_REQUEST": "true"}


def _issue_token(web: Any) -> str:
    page = web.post("/settings/tokens", **HX).content.decode()
    found = re.search(r'id="token-new" class="token" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def _api_status(token: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return int(client.get("/v1/user").status_code)


def _actions(user: Any) -> set[str]:
    return set(
        AuditEvent.objects.filter(user_id=user.pk).values_list("action", flat=True)
    )


def test_a_password_reset_ends_every_api_token_and_is_audited(alice_web, alice):
    token = _issue_token(alice_web)
    assert _api_status(token) == 200
    anon = Client()
    anon.post("/password/reset", {"email": alice.email})
    link = re.search(
        r"http://testserver(/password/reset/\S+)", str(mail.outbox[0].body)
    )
    assert link
    form = anon.get(link.group(1), follow=True)
    new = "a whole new passphrase"
    done = anon.post(
        form.redirect_chain[-1][0], {"new_password1": new, "new_password2": new}
    )
    assert done.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password(new)
    assert alice_web.get("/settings").status_code == 302, "the old session ended"
    assert _api_status(token) == 401, "and so did the token"
    assert "auth.password_reset" in _actions(alice)


def test_a_password_change_ends_the_tokens_but_keeps_this_session(alice_web, alice):
    token = _issue_token(alice_web)
    new = "another fine passphrase"
    r = alice_web.post(
        "/password/change",
        {"old_password": DEFAULT_PASSWORD, "new_password1": new, "new_password2": new},
    )
    assert r.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password(new)
    assert _api_status(token) == 401
    assert alice_web.get("/settings").status_code == 200
    assert "auth.password_change" in _actions(alice)


def test_searching_in_the_ui_counts_as_no_use(alice_web, alice):
    item = memory_for(alice, "bank password hint lives here")
    for _ in range(3):
        assert alice_web.get("/memory?q=bank+password").status_code == 200
    flush_retrieval_log()
    assert MemoryItem.objects.get(pk=item.pk).access_count == item.access_count
