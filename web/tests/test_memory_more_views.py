"""The memory manager's export of selected memories, tonight's forecast and
imports with progress, through Django's test client: the same services as the
API, errors beside their control with the code, and bob seeing nothing of
alice's."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from audit.models import AuditEvent
from memory import tasks
from memory.imports import services as import_services
from memory.models import MeditationRun, MemoryImport, MemoryItem, ScoreRecord
from memory.tests.factories import memory_for
from web.tests.conftest import HX, said, text_of

pytestmark = pytest.mark.django_db

T0 = datetime(2021, 5, 1, 9, 30, tzinfo=UTC)


# --- Export selected -----------------------------------------------------------


def _export(client, ids):
    return client.post("/memory/bulk", {"action": "export", "ids": ids}, **HX)


def test_export_selected_downloads_the_apis_own_json_and_is_audited(
    alice, alice_web, alice_api
):
    plain = memory_for(alice, "Alice's bike is the green one", metadata={"tags": ["x"]})
    secret = memory_for(alice, "my diagnosis", metadata={"sensitive": True})
    memory_for(alice, "not selected")
    ids = [plain.public_id, secret.public_id]

    response = _export(alice_web, ids)
    assert response.status_code == 200, text_of(response)
    assert response["Content-Type"] == "application/json"
    assert re.fullmatch(
        r'attachment; filename="kimberly-memories-\d{8}-\d{6}\.json"',
        response["Content-Disposition"],
    )
    assert said(response)["message"] == "2 memories exported."
    body = json.loads(response.content)
    # the file is the API's answer to the same bulk export, field for field
    api = alice_api.post(
        "/v1/memory/bulk", {"action": "export", "ids": ids}, format="json"
    ).json()
    assert body == api
    by_id = {i["id"]: i for i in body["items"]}
    assert set(by_id) == set(ids)
    assert by_id[plain.public_id]["metadata"]["tags"] == ["x"]
    # a sensitive (sealed) memory is exported opened, to its owner, as the API does
    assert by_id[secret.public_id]["content"] == "my diagnosis"
    assert by_id[secret.public_id]["metadata"]["sensitive"] is True
    exports = AuditEvent.objects.filter(
        user_id=alice.pk, action="memory.bulk", details__action="export"
    )
    assert exports.count() == 2  # the screen's and the API's
    assert all(sorted(e.details["ids"]) == sorted(ids) for e in exports)


def test_export_with_nothing_selected_is_refused_with_its_code(alice_web):
    response = _export(alice_web, [])
    assert response.status_code == 400
    assert "validation_error" in text_of(response) and "ids" in text_of(response)
    assert said(response)["level"] == "error"
    assert "Content-Disposition" not in response


def test_the_bulk_form_offers_export_as_a_download(alice, alice_web):
    memory_for(alice, "something")
    page = text_of(alice_web.get("/memory"))
    button = re.search(r"<button[^>]*value=\"export\"[^>]*>([^<]*)</button>", page)
    assert button and button.group(1) == "Export selected"
    assert "data-download" in button.group(0) and "hx-post" not in button.group(0)


def test_bob_cannot_export_alices_memories(alice, bob, bob_web):
    item = memory_for(alice, "Alice's secret recipe")
    mine = memory_for(bob, "bob's own")
    response = _export(bob_web, [mine.public_id, item.public_id])
    assert response.status_code == 404
    assert "recipe" not in text_of(response)
    assert "Content-Disposition" not in response
    assert not AuditEvent.objects.filter(action="memory.bulk").exists()


# --- Tonight's forecast --------------------------------------------------------


def _past_its_lifetime(user, content: str, **kwargs) -> MemoryItem:
    item = memory_for(user, content, tier="short-term", **kwargs)
    MemoryItem.objects.filter(pk=item.pk).update(
        created_at=timezone.now() - timedelta(hours=40)
    )
    return item


def test_the_memory_page_does_not_compute_the_forecast(alice, alice_web):
    _past_its_lifetime(alice, "an old session")
    page = text_of(alice_web.get("/memory"))
    assert 'hx-get="/memory/forecast"' in page and "Compute the forecast" in page
    assert "forecast-rows" not in page and "Nothing would change" not in page


def test_the_forecast_lists_each_change_with_its_reason_and_signals(alice, alice_web):
    kept = _past_its_lifetime(alice, "the hotel wifi password", protected=True)
    gone = _past_its_lifetime(alice, "parking on level three")
    memory_for(alice, "a fresh long-term memory")
    runs, records = MeditationRun.objects.count(), ScoreRecord.objects.count()

    response = alice_web.get("/memory/forecast", **HX)
    assert response.status_code == 200, text_of(response)
    body = text_of(response)
    assert said(response)["message"] == "Forecast: 2 changes tonight."
    assert "<dt>Promote</dt><dd>1</dd>" in body and "<dt>Expire</dt><dd>1</dd>" in body
    assert "<dt>Archive</dt><dd>0</dd>" in body and "<dt>Purge</dt><dd>0</dd>" in body
    promoted = body.split(f'id="forecast-{kept.public_id}"')[1].split("</li>")[0]
    assert "Promote" in promoted and "the hotel wifi password" in promoted
    assert "protected (saved): promoted" in promoted  # the rule, in words
    assert "<dt>Relevance to your goals</dt>" in promoted  # the score's signals
    assert "<dt>Recency and frequency</dt>" in promoted
    assert f'hx-get="/memory/{kept.public_id}"' in promoted  # opens the memory
    expired = body.split(f'id="forecast-{gone.public_id}"')[1].split("</li>")[0]
    assert "Expire" in expired and ": expired" in expired
    assert "a fresh long-term memory" not in body  # kept: not a change
    assert "0.40 \u00d7 relevance to your goals" in body  # the weights
    assert 'id="forecast-title" tabindex="-1" data-autofocus' in body
    # a read: nothing was applied, kept, or audited
    assert (MeditationRun.objects.count(), ScoreRecord.objects.count()) == (
        runs,
        records,
    )
    assert MemoryItem.objects.get(pk=gone.pk).tier == "short-term"


def test_with_nothing_to_change_the_forecast_says_so(alice, alice_web):
    memory_for(alice, "a fresh long-term memory")
    response = alice_web.get("/memory/forecast", **HX)
    assert "Nothing would change" in text_of(response)
    assert said(response)["message"] == "Forecast: 0 changes tonight."


def test_the_forecast_pages_through_one_forecast(alice, alice_web, monkeypatch):
    from web.views import memory_forecast

    monkeypatch.setattr(memory_forecast, "FORECAST_PAGE", 2)
    items = [_past_its_lifetime(alice, f"old session {n}") for n in range(3)]
    first = text_of(alice_web.get("/memory/forecast", **HX))
    assert "Changes 1 to 2 of 3." in first
    more = re.search(r'hx-get="(/memory/forecast\?as_of=[^"]+&amp;page=2)"', first)
    assert more, first
    second = alice_web.get(more.group(1).replace("&amp;", "&"), **HX)
    assert "Changes 3 to 3 of 3." in text_of(second)
    shown = [i.public_id for i in items if i.public_id in first + text_of(second)]
    assert len(shown) == 3


def test_a_bad_forecast_time_is_refused_with_its_code(alice_web):
    response = alice_web.get("/memory/forecast?as_of=yesterday", **HX)
    assert response.status_code == 400
    assert "validation_error" in text_of(response) and "As of" in text_of(response)


def test_bobs_forecast_shows_none_of_alices_memories(alice, alice_web, bob_web):
    item = _past_its_lifetime(alice, "Alice's secret recipe")
    mine = text_of(alice_web.get("/memory/forecast", **HX))
    assert item.public_id in mine  # alice's forecast, now cached by its as_of
    as_of = re.search(r'datetime="([^"]+)"', mine)
    assert as_of
    for url in ("/memory/forecast", f"/memory/forecast?as_of={quote(as_of[1])}"):
        response = bob_web.get(url, **HX)
        assert response.status_code == 200
        body = text_of(response)
        assert "recipe" not in body and item.public_id not in body
        assert said(response)["message"] == "Forecast: 0 changes tonight."


# --- Imports -------------------------------------------------------------------


def _records(n: int = 3) -> bytes:
    return json.dumps(
        [
            {
                "content": f"Imported note {i} about the lighthouse",
                "created_at": (T0 + timedelta(days=i)).isoformat(),
            }
            for i in range(n)
        ]
    ).encode()


def _import(client, data: bytes = b"", name="export.json", **fields):
    upload = SimpleUploadedFile(name, data or _records(), "application/json")
    form = {"file": upload, "tier": "long-term", **fields}
    return client.post("/memory/imports/upload", form, **HX)


def test_a_small_import_is_done_at_once_and_its_row_says_so(alice, alice_web):
    response = _import(alice_web, tier="permanent")
    assert response.status_code == 200, text_of(response)
    assert said(response)["message"] == (
        "Import finished: 3 imported, 0 already there, 0 refused."
    )
    body = text_of(response)
    imp = MemoryImport.objects.get(user=alice)
    assert f'id="import-{imp.public_id}"' in body and 'data-status="succeeded"' in body
    assert "hx-trigger" not in body  # done: it does not poll
    assert "Processed 3 of 3 records" in body and "<dt>Imported</dt><dd>3</dd>" in body
    assert "JSON list of memories" in body  # the format, sniffed
    assert '<section id="quotas" class="quotas"' in body  # the bars, fresh
    assert "3 active, 0 archived" in body.split('id="quotas"')[1]
    items = MemoryItem.objects.filter(user=alice)
    assert {i.tier for i in items} == {"permanent"} and items.count() == 3
    assert min(i.created_at for i in items) == T0  # the original times

    again = _import(alice_web)  # the same file: nothing new
    assert "0 imported, 3 already there" in said(again)["message"]
    listed = text_of(alice_web.get("/memory/imports", **HX))
    assert listed.count('class="import"') == 2


def test_a_large_import_polls_its_progress_until_done(
    alice, alice_web, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.IMPORT_SYNC_MAX_RECORDS = 1
    settings.IMPORT_BATCH_SIZE = 1
    monkeypatch.setattr(import_services, "_send", lambda pk: None)  # no worker here
    with django_capture_on_commit_callbacks(execute=True):
        response = _import(alice_web, format="json", tier="short-term")
    assert said(response)["message"] == "Import of 3 records queued."
    imp = MemoryImport.objects.get(user=alice)
    url = f"/memory/imports/{imp.public_id}"
    body = text_of(response)
    assert f'hx-get="{url}" hx-trigger="every 1s"' in body
    assert "Processed 0 of 3 records" in body and 'data-status="queued"' in body
    assert 'id="quotas"' not in body  # nothing stored yet

    # the worker does one batch, then hands over: the row shows how far it got
    assert (
        import_services.memory_import_run(import_id=str(imp.id), budget_seconds=0)
        == "handed_over"
    )
    polled = alice_web.get(url, **HX)
    assert "Processed 1 of 3 records" in text_of(polled)
    assert 'hx-trigger="every 1s"' in text_of(polled)
    assert "HX-Trigger" not in polled  # nothing said until it is done

    assert tasks.import_run(str(imp.id)) == "succeeded"
    done = alice_web.get(url, **HX)
    assert "Processed 3 of 3 records" in text_of(done)
    assert "hx-trigger" not in text_of(done)  # the row stops polling
    assert 'id="quotas" class="quotas" aria-labelledby="quotas-title" hx-swap-oob' in (
        text_of(done)
    )
    assert said(done)["message"] == (
        "Import finished: 3 imported, 0 already there, 0 refused."
    )


def test_a_malformed_file_is_refused_beside_the_form_naming_the_record(
    alice, alice_web
):
    bad = json.dumps([{"content": "fine", "created_at": T0.isoformat()}, {}]).encode()
    response = _import(alice_web, bad)
    assert response.status_code == 400
    body = text_of(response)
    assert 'data-error-code="invalid_import"' in body and "record 1" in body
    assert said(response)["level"] == "error"
    assert not MemoryItem.objects.filter(user=alice).exists()


def test_an_import_over_the_limit_is_413_and_a_bad_tier_400(alice, alice_web, settings):
    assert "Tier" in text_of(_import(alice_web, tier="forever"))
    settings.IMPORT_MAX_BYTES = 10
    response = _import(alice_web)
    assert response.status_code == 413
    assert "payload_too_large" in text_of(response)
    assert not MemoryImport.objects.filter(user=alice).exists()


def test_the_import_form_offers_the_formats_and_tiers(alice_web):
    page = text_of(alice_web.get("/memory"))
    form = page.split('id="import-upload"')[1].split("</form>")[0]
    for label in (
        "Detect from the file",
        "ChatGPT export (conversations.json)",
        "Kimberly transcript (JSON lines)",
        "JSON list of memories",
    ):
        assert label in form
    assert '<label for="import-file">Export file</label>' in form
    assert '<option value="long-term" selected>' in form
    assert 'hx-get="/memory/imports" hx-trigger="load"' in page


def test_bob_gets_404_on_alices_import_and_lists_none(alice_web, bob_web):
    _import(alice_web)
    imp = MemoryImport.objects.get()
    response = bob_web.get(f"/memory/imports/{imp.public_id}", **HX)
    assert response.status_code == 404
    assert "lighthouse" not in text_of(response)
    listed = text_of(bob_web.get("/memory/imports", **HX))
    assert imp.public_id not in listed and "No imports yet." in listed


def test_signed_out_the_new_fragments_send_to_sign_in(client):
    for url in ("/memory/forecast", "/memory/imports", "/memory/imports/imp_x"):
        response = client.get(url, **HX)
        assert response.status_code == 401 and response["HX-Redirect"] == "/login"


def test_a_chatgpt_export_shows_what_it_skipped_and_each_refusal(alice, alice_web):
    from memory.tests.chatgpt_export import chatgpt_export

    export, wanted = chatgpt_export(user_messages=3)
    response = _import(alice_web, json.dumps(export).encode(), "conversations.json")
    body = text_of(response)
    assert response.status_code == 200, body
    assert "ChatGPT export (conversations.json)" in body  # sniffed
    assert "<dt>Skipped: assistant message</dt>" in body  # entries not memories
    assert MemoryItem.objects.filter(user=alice).count() == len(wanted) == 3


def test_a_refused_record_is_listed_with_its_reason(alice, alice_web):
    records = json.loads(_records(2))
    records[1]["content"] = "x" * (64 * 1024 + 1)
    response = _import(alice_web, json.dumps(records).encode())
    body = text_of(response)
    assert (
        "<dt>Imported</dt><dd>1</dd>" in body and "<dt>Refused</dt><dd>1</dd>" in body
    )
    assert "Record 1: <code>content_too_large</code>" in body
    assert said(response)["message"].endswith("1 refused.")


def test_a_polling_row_holds_nothing_to_open_until_its_import_is_done(
    alice, alice_web, settings, monkeypatch, django_capture_on_commit_callbacks
):
    """The row replaces itself each second while it runs: a control in it would
    lose its focus and close again, so the refusals are listed once it is done."""
    settings.IMPORT_SYNC_MAX_RECORDS = 1
    settings.IMPORT_BATCH_SIZE = 1
    monkeypatch.setattr(import_services, "_send", lambda pk: None)
    records = json.loads(_records(3))
    records[0]["content"] = "x" * (64 * 1024 + 1)
    with django_capture_on_commit_callbacks(execute=True):
        _import(alice_web, json.dumps(records).encode())
    imp = MemoryImport.objects.get(user=alice)
    url = f"/memory/imports/{imp.public_id}"
    import_services.memory_import_run(import_id=str(imp.id), budget_seconds=0)
    polled = text_of(alice_web.get(url, **HX))
    assert "<dt>Refused</dt><dd>1</dd>" in polled and "<details>" not in polled
    assert tasks.import_run(str(imp.id)) == "succeeded"
    done = text_of(alice_web.get(url, **HX))
    assert "<details>" in done and "Record 0: <code>content_too_large</code>" in done
