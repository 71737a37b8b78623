"""Fixtures and helpers of the UI's tests: a signed-in browser session per
persona (Django's test client with the session cookie), the header of an htmx
request, and what a response says and shows."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

# The header htmx sends with each of its requests (django-htmx reads it).
HX: dict[str, Any] = {"HTTP_HX_REQUEST": "true"}


def said(response: Any) -> dict[str, Any]:
    """The announcement the response asks the page to make (HX-Trigger):
    {"message": ..., "level": "info" | "error"}."""
    return dict(json.loads(response["HX-Trigger"])["announce"])


def text_of(response: Any) -> str:
    return str(response.content.decode())


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
