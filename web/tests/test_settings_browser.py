"""Settings and privacy in a real headless chromium against a live server:
export and download the zip; delete the account and read its receipt; the axe
scan and screenshots of the screen's filled-in states at both widths."""

from __future__ import annotations

import zipfile

import pytest
from playwright.sync_api import Page, expect

from privacy.erasure.models import Deletion
from privacy.erasure.services import deletion_run
from privacy.exports import services as export_services
from privacy.exports.models import DataExport
from users.models import User
from web.tests import test_browser as journeys
from web.tests.test_browser import _scan, _sign_in

# The browser, context and page fixtures of the first journeys, shared.
browser, context, page = journeys.browser, journeys.context, journeys.page
_model_loaded = journeys._model_loaded

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _live(page: Page):
    return page.locator("#live")


def _settings(page: Page, base: str, email: str) -> None:
    _sign_in(page, base, email)
    page.get_by_role("navigation", name="Main").get_by_role(
        "link", name="Settings"
    ).click()
    expect(page.get_by_role("heading", name="Settings and privacy")).to_be_visible()


def test_export_then_download_the_zip(live_server, page, alice, tmp_path):
    _settings(page, live_server.url, alice.email)
    exports = page.locator("#settings-exports")
    exports.get_by_label("Format").select_option("json")
    exports.get_by_role("button", name="Request export").click()
    expect(_live(page)).to_have_text("Export requested: it is being prepared.")
    expect(exports.locator("progress")).to_be_visible()

    # What the Celery worker does with the queued export.
    export_services.export_run(export_id=str(DataExport.objects.get(user=alice).pk))
    link = exports.get_by_role("link", name="Download the export")
    expect(link).to_be_visible()  # the list polls until the export is done
    expect(_live(page)).to_have_text("Your export is ready to download.")
    with page.expect_download() as info:
        link.click()
    download = info.value
    assert download.suggested_filename.startswith("kimberly-exp_")
    path = tmp_path / "export.zip"
    download.save_as(path)
    with zipfile.ZipFile(path) as zf:
        assert "manifest.json" in zf.namelist()


def test_delete_the_account_and_see_the_receipt(live_server, page, alice):
    _settings(page, live_server.url, alice.email)
    danger = page.locator("#settings-delete")
    danger.get_by_role("button", name="Delete my account").click()
    expect(danger.locator(".error-slot")).to_contain_text("confirmation_required")
    assert User.objects.get(pk=alice.pk).is_active

    danger.get_by_label("Yes, erase my account and all its data").check()
    danger.get_by_role("button", name="Delete my account").click()
    expect(
        page.get_by_role("heading", name="Your account is being deleted")
    ).to_be_visible()
    expect(page.get_by_label("Receipt token", exact=False)).not_to_have_value("")
    expect(page.locator(".deletion-status")).to_have_text("Queued")
    expect(page.get_by_role("link", name="Sign in")).to_be_visible()  # signed out

    # What the Celery worker does with the queued erasure.
    deletion_run(deletion_id=Deletion.objects.get(user_id=alice.pk).pk)
    expect(page.locator(".deletion-status")).to_have_text("Succeeded")
    expect(page.locator("#receipt")).to_contain_text("Verified:")
    expect(page.get_by_role("table")).to_contain_text("postgresql")
    assert not User.objects.filter(pk=alice.pk).exists()

    found = _scan(page, "account-deleted", page.url)
    assert found == []
    page.goto(f"{live_server.url}/settings")
    page.wait_for_url("**/login?next=/settings")


def _fill_settings(page: Page) -> None:
    """A token shown once, a goal, a consent with history open, an error."""
    page.locator("#settings-tokens").get_by_role(
        "button", name="Create API token"
    ).click()
    expect(page.locator("#token-new")).to_be_focused()
    goals = page.locator("#settings-goals")
    goals.get_by_label("New goal").fill("Learn Portuguese")
    goals.get_by_role("button", name="Add goal").click()
    expect(_live(page)).to_have_text("Goal added.")  # each step done before the next
    card = page.locator("#consent-telemetry")  # granted, or withdrawn the 2nd time
    card.locator("button").click()
    expect(card.locator("button")).to_be_focused()
    expect(_live(page)).to_contain_text("Telemetry: consent")
    card.locator("summary").click()
    weights = page.locator("#settings-weights")
    for field in weights.locator("input[type=number]").all():
        field.fill("0")
    weights.get_by_role("button", name="Save weights").click()
    expect(weights.locator(".error")).to_contain_text("validation_error")


def test_the_filled_settings_screen_passes_axe_at_both_widths(live_server, page, alice):
    _sign_in(page, live_server.url, alice.email)
    found = _scan(
        page, "settings-filled", f"{live_server.url}/settings", prepare=_fill_settings
    )
    assert found == []
