"""The site's 404 and 500 are pages on the UI's routes and JSON on the API's."""

from __future__ import annotations

import pytest
from django.test import Client, RequestFactory

from web.views.errors import server_error

pytestmark = pytest.mark.django_db

HTML = "text/html,application/xhtml+xml,*/*;q=0.8"


def test_an_unknown_ui_address_is_a_page_in_words(alice_web):
    r = alice_web.get("/no/such/page", headers={"Accept": HTML})
    assert r.status_code == 404 and r["Content-Type"].startswith("text/html")
    text = r.content.decode()
    assert "There is no page at this address." in text
    assert 'data-error-code="not_found"' in text
    assert 'href="/memory"' in text  # the navigation is there


def test_unknown_api_addresses_and_json_clients_still_get_json():
    client = Client()
    api = client.get("/v1/no/such/route", headers={"Accept": HTML})
    assert api.status_code == 404 and api.json()["error"] == "not_found"
    wants_json = client.get("/no/such/page", HTTP_ACCEPT="application/json")
    assert wants_json.status_code == 404 and wants_json.json()["error"] == "not_found"


def test_a_server_error_on_a_ui_route_is_a_page_and_json_on_the_api():
    factory = RequestFactory()
    page = server_error(factory.get("/memory", headers={"Accept": HTML}))
    assert page.status_code == 500 and b'data-error-code="internal_error"' in (
        page.content
    )
    api = server_error(factory.get("/v1/memory", headers={"Accept": HTML}))
    assert api.status_code == 500 and api["Content-Type"] == "application/json"


def test_the_500_page_needs_no_user_and_its_last_resort_is_html():
    from django.db import DatabaseError
    from django.utils.functional import SimpleLazyObject

    def unreachable():
        raise DatabaseError("the database is down")

    request = RequestFactory().get("/memory", headers={"Accept": HTML})
    request.user = SimpleLazyObject(unreachable)  # type: ignore[assignment]
    page = server_error(request)
    assert page.status_code == 500 and page["Content-Type"].startswith("text/html")
    assert b'data-error-code="internal_error"' in page.content


def test_a_refused_csrf_check_is_a_fragment_for_htmx_and_a_page_otherwise(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    fragment = client.post("/memory/add", {"content": "x"}, HTTP_HX_REQUEST="true")
    assert fragment.status_code == 403
    text = fragment.content.decode()
    assert 'data-error-code="csrf_failed"' in text and "<html" not in text
    page = client.post("/memory/add", {"content": "x"}, headers={"Accept": HTML})
    assert page.status_code == 403 and "<html" in page.content.decode()
