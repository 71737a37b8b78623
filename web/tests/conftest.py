"""Fixtures of the UI's tests: a signed-in browser session per persona
(Django's test client with the session cookie)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client


def _signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def alice_web(alice: Any) -> Client:
    return _signed_in(alice)


@pytest.fixture
def bob_web(bob: Any) -> Client:
    return _signed_in(bob)
