"""The memory screen's documents and detail panel in a real headless chromium:
upload a document, watch it go from processing to ready, find its content by
meaning, and open it to see where it came from; with the axe scan."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from memory import indexing
from memory.models import MemoryItem
from memory.tests.factories import memory_for
from web.tests import test_browser as journeys
from web.tests.browser import WIDTHS, blocking_violations, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

browser = journeys.browser
context = journeys.context
page = journeys.page
_model_loaded = journeys._model_loaded


def _live(page: Page):
    return page.locator("#live")


def test_upload_a_document_and_find_its_content(live_server, page, alice, tmp_path):
    for text in journeys.OTHERS:
        memory_for(alice, text)
    document = Path(tmp_path) / "family.txt"
    document.write_text(journeys.CLARA)
    journeys._sign_in(page, live_server.url, alice.email)
    page.goto(f"{live_server.url}/memory")

    upload = page.locator("#attachment-upload")
    upload.get_by_label("Document").set_input_files(str(document))
    upload.get_by_label("Tags").fill("family")
    upload.get_by_role("button", name="Upload document").click()
    expect(_live(page)).to_have_text("Document family.txt uploaded: 1 memory.")
    row = page.locator("#attachment-rows > li").first
    expect(row).to_contain_text("family.txt")
    expect(row.locator("[data-status=indexing]")).to_be_visible()
    assert blocking_violations(page) == []

    indexing.drain_pending()  # what the Celery worker does; the row polls
    expect(row.locator("[data-status=ready]")).to_be_visible()
    expect(_live(page)).to_have_text("Document family.txt is ready.")

    page.get_by_label("Find by meaning").fill(journeys.QUESTION)
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator("#memory-list")).to_contain_text("best match first")
    first = page.locator("#memory-rows > li").first
    expect(first).to_contain_text(journeys.CLARA)
    expect(first).to_contain_text("upload")

    first.get_by_role("button", name="Open").click()
    detail = page.locator("#memory-detail")
    expect(detail.locator("#detail-events")).to_contain_text("memory.create")
    expect(detail.locator("#detail-consent")).to_contain_text("Not sensitive")
    for width_name, (width, height) in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        assert blocking_violations(page) == [], width_name
        screenshot(page, "memory-documents", width_name)


def test_bulk_archive_and_delete_the_selected_rows(live_server, page, alice):
    for text in [journeys.CLARA, *journeys.OTHERS]:
        memory_for(alice, text)
    journeys._sign_in(page, live_server.url, alice.email)
    page.goto(f"{live_server.url}/memory")
    rows = page.locator("#memory-rows > li")
    expect(rows).to_have_count(3)
    bulk = page.locator("#memory-bulk")

    bulk.get_by_role("button", name="Archive selected").click()
    expect(bulk.locator(".error-slot")).to_contain_text("validation_error")

    for text in journeys.OTHERS:
        rows.filter(has_text=text).get_by_label("Select").check()
    bulk.get_by_role("button", name="Archive selected").click()
    expect(_live(page)).to_have_text("2 memories archived.")
    expect(page.locator("#memory-rows > li.is-archived")).to_have_count(2)
    expect(bulk.locator(".error-slot")).to_be_empty()

    page.on("dialog", lambda dialog: dialog.accept())
    for text in journeys.OTHERS:
        rows.filter(has_text=text).get_by_label("Select").check()
    bulk.get_by_role("button", name="Delete selected").click()
    expect(_live(page)).to_have_text("2 memories deleted.")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(journeys.CLARA)
    assert MemoryItem.objects.filter(user=alice).count() == 1
