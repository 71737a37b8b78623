"""Shared fixtures: API clients, personas (alice owns, bob must see nothing of hers)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django_redis import get_redis_connection
from rest_framework.test import APIClient

from users.tests.factories import UserFactory


@pytest.fixture(autouse=True)
def _clean_redis() -> Iterator[None]:
    """Each test starts with empty cache and rate-limit state (a test-only Redis db)."""
    location = str(settings.CACHES["default"]["LOCATION"])
    assert location.endswith(f"/{settings.REDIS_CACHE_DB}"), "never flush a live cache"
    get_redis_connection("default").flushdb()
    yield


@pytest.fixture
def api() -> APIClient:
    return APIClient()


def _client_for(user: Any) -> APIClient:
    from knox.models import AuthToken

    _, token = AuthToken.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def alice(db: None) -> Any:
    return UserFactory(email="alice@example.com")


@pytest.fixture
def bob(db: None) -> Any:
    return UserFactory(email="bob@example.com")


@pytest.fixture
def alice_api(alice: Any) -> APIClient:
    return _client_for(alice)


@pytest.fixture
def bob_api(bob: Any) -> APIClient:
    return _client_for(bob)
