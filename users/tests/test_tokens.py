"""API tokens made and revoked from Settings: shown once, kept hashed, audited,
and one user's key never reaches another's token."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from audit.models import AuditEvent
from kimberly.api.errors import NotFound
from memory.tests.factories import ctx_for
from users import selectors, services

pytestmark = pytest.mark.django_db


def _works(token: str) -> bool:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client.get("/v1/user").status_code == 200


def test_a_created_token_works_is_listed_by_key_and_revoking_it_ends_it(alice):
    issued = services.api_token_create(ctx=ctx_for(alice), user=alice)
    assert _works(issued.token)
    listed = list(selectors.api_tokens_for(user=alice))
    assert [t.token_key for t in listed] == [issued.token[: len(listed[0].token_key)]]
    assert issued.token not in {t.digest for t in listed}  # kept hashed

    services.api_token_revoke(
        ctx=ctx_for(alice), user=alice, token_key=listed[0].token_key
    )
    assert not _works(issued.token)
    assert not selectors.api_tokens_for(user=alice).exists()
    actions = AuditEvent.objects.filter(user_id=alice.pk).values_list(
        "action", flat=True
    )
    assert sorted(actions) == ["auth.token_create", "auth.token_revoke"]


def test_bob_cannot_revoke_alices_token_and_sees_none_of_hers(alice, bob):
    issued = services.api_token_create(ctx=ctx_for(alice), user=alice)
    key = selectors.api_tokens_for(user=alice).get().token_key
    with pytest.raises(NotFound) as refused:
        services.api_token_revoke(ctx=ctx_for(bob), user=bob, token_key=key)
    assert refused.value.code == "token_not_found"
    assert not selectors.api_tokens_for(user=bob).exists()
    assert _works(issued.token)


def test_expired_tokens_are_not_listed(alice):
    dead, _ = AuthToken.objects.create(user=alice, expiry=timedelta(hours=1))
    AuthToken.objects.filter(pk=dead.pk).update(
        expiry=timezone.now() - timedelta(seconds=1)
    )
    live, _ = AuthToken.objects.create(user=alice, expiry=timedelta(hours=1))
    assert list(selectors.api_tokens_for(user=alice)) == [live]
