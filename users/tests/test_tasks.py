from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from knox.models import AuthToken

from users.tasks import purge_expired_tokens

pytestmark = pytest.mark.django_db


def test_purge_expired_tokens_task_deletes_expired_tokens(alice):
    token, _ = AuthToken.objects.create(user=alice, expiry=timedelta(hours=1))
    AuthToken.objects.filter(pk=token.pk).update(
        expiry=timezone.now() - timedelta(minutes=1)
    )
    assert purge_expired_tokens() == 1
    assert not AuthToken.objects.exists()
