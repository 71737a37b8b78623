"""The memory screen's documents, imports, forecast, export and detail panel in
a real headless chromium: upload a document, watch it go from processing to
ready, find its content by meaning, and open it to see where it came from;
import a file and watch its progress, see tonight's forecast, export the
selected memories; with the axe scan."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from memory import indexing, tasks
from memory.imports import services as import_services
from memory.models import MemoryImport, MemoryItem
from memory.tests.factories import memory_for
from web.tests import test_browser as journeys
from web.tests.browser import (
    WIDTHS,
    blocking_violations,
    focus_is_visible,
    overflows_horizontally,
    screenshot,
    tab_to,
)

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


IMPORTED = [
    {"content": f"Imported note {n} about the lighthouse", "created_at": at}
    for n, at in enumerate(
        ["2021-05-01T09:30:00Z", "2021-05-02T09:30:00Z", "2021-05-03T09:30:00Z"]
    )
]


def test_import_with_progress_then_forecast_and_export(
    live_server, page, alice, tmp_path, settings, monkeypatch
):
    settings.IMPORT_SYNC_MAX_RECORDS = 1  # three records: a job, one per batch
    settings.IMPORT_BATCH_SIZE = 1
    monkeypatch.setattr(import_services, "_send", lambda pk: None)  # no worker
    old = memory_for(alice, "parking on level three", tier="short-term")
    MemoryItem.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(hours=40)
    )
    export = Path(tmp_path) / "notes.json"
    export.write_text(json.dumps(IMPORTED))
    journeys._sign_in(page, live_server.url, alice.email)
    page.goto(f"{live_server.url}/memory")
    expect(page.locator("#imports-empty")).to_be_visible()

    form = page.locator("#import-upload")
    form.get_by_label("Export file").set_input_files(str(export))
    form.get_by_label("Format").select_option(label="JSON list of memories")
    form.get_by_role("button", name="Import file").click()
    expect(_live(page)).to_have_text("Import of 3 records queued.")
    row = page.locator("#import-rows > li").first
    expect(row).to_contain_text("Processed 0 of 3 records")
    expect(page.locator("#imports-empty")).to_be_hidden()
    imp = MemoryImport.objects.get(user=alice)
    # the worker: one batch, then it hands over; the row polls and shows it
    import_services.memory_import_run(import_id=str(imp.id), budget_seconds=0)
    expect(row).to_contain_text("Processed 1 of 3 records")
    assert tasks.import_run(str(imp.id)) == "succeeded"
    expect(row).to_have_attribute("data-status", "succeeded")
    expect(row).to_contain_text("Processed 3 of 3 records")
    expect(page.locator("#quotas")).to_contain_text("3 active")  # bars refreshed
    expect(_live(page)).to_have_text(
        "Import finished: 3 imported, 0 already there, 0 refused."
    )

    # the forecast by keyboard: from the import button on, focus follows the swaps
    tab_to(page, "#forecast-compute")
    page.keyboard.press("Enter")
    expect(page.locator("#forecast-title")).to_be_focused()
    expect(_live(page)).to_have_text("Forecast: 1 change tonight.")
    change = page.locator(f"#forecast-{old.public_id}")
    expect(change).to_contain_text("short-term past its lifetime")
    tab_to(page, f"#forecast-{old.public_id} button")
    assert focus_is_visible(page)
    page.keyboard.press("Enter")
    expect(page.locator("#detail-title")).to_be_focused()

    bulk = page.locator("#memory-bulk")
    bulk.get_by_role("button", name="Export selected").click()
    expect(bulk.locator(".error-slot")).to_contain_text("validation_error")
    page.locator(f"#row-{old.public_id}").get_by_label("Select").check()
    with page.expect_download() as download:
        bulk.get_by_role("button", name="Export selected").click()
    assert download.value.suggested_filename.startswith("kimberly-memories-")
    saved = json.loads(Path(download.value.path()).read_text())
    assert [i["content"] for i in saved["items"]] == ["parking on level three"]
    expect(_live(page)).to_have_text("1 memory exported.")
    expect(bulk.locator(".error-slot")).to_be_empty()

    for width_name, (width, height) in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        assert blocking_violations(page) == [], width_name
        assert not overflows_horizontally(page), width_name
        screenshot(page, "memory-imports-forecast", width_name)
