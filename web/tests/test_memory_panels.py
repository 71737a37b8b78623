"""The memory screen's detail panel (audit events, accesses, consent) and its
documents (upload with status), through Django's test client; bob gets 404."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from memory import indexing
from memory.attachments.models import Attachment
from memory.models import MemoryItem, RetrievalRecord
from memory.tests.factories import grant, memory_for
from users import consents
from web.tests.conftest import HX, said, text_of

pytestmark = pytest.mark.django_db

NOTES = b"The tomatoes were planted along the south fence in April."


def _upload(client, name="garden.txt", data=NOTES, **fields):
    body = {"file": SimpleUploadedFile(name, data, content_type="text/plain")}
    return client.post("/memory/documents/upload", {**body, **fields}, **HX)


def test_the_detail_shows_its_audit_events_and_accesses(alice, alice_web):
    item = memory_for(alice, "Alice's bike is blue")
    other = memory_for(alice, "Alice's car is red")
    alice_web.post(f"/memory/{item.public_id}/protect", **HX)
    alice_web.post(f"/memory/{other.public_id}/archive", **HX)
    RetrievalRecord.objects.create(
        user_id=alice.pk,
        item_id=item.pk,
        kind="chat",
        request_id="msg_0123",
        rank=2,
        final=0.625,
        created_at=timezone.now(),
    )
    body = text_of(alice_web.get(f"/memory/{item.public_id}", **HX))
    events = body.split('id="detail-events"')[1]
    assert "<code>memory.protect</code>" in events
    assert "memory.archive" not in events  # the other memory's event
    accesses = body.split('id="detail-accesses"')[1].split("</ul>")[0]
    assert "chat reply <code>msg_0123</code> · rank 2 · score 0.625" in accesses
    assert "Not sensitive: kept without a consent." in body


def test_an_unused_memory_says_so(alice, alice_web):
    item = memory_for(alice, "never read")
    body = text_of(alice_web.get(f"/memory/{item.public_id}", **HX))
    assert "Not used yet: no chat or query has read this memory." in body


def test_the_detail_shows_the_consent_of_a_sensitive_memory(alice, alice_web):
    grant(alice, consents.Purpose.SENSITIVE_MEMORY)
    item = memory_for(alice, "my diagnosis", metadata={"sensitive": True})
    body = text_of(alice_web.get(f"/memory/{item.public_id}", **HX))
    assert "kept with your consent to sensitive memories (given)" in body


def test_a_document_upload_shows_processing_then_ready(alice, alice_web):
    response = _upload(alice_web, tags="home")
    assert response.status_code == 200, text_of(response)
    assert said(response)["message"] == "Document garden.txt uploaded: 1 memory."
    attachment = Attachment.objects.get(user=alice)
    body = text_of(response)
    assert 'data-status="indexing"' in body and 'hx-trigger="every 2s"' in body
    chunk = MemoryItem.objects.get(attachment=attachment)
    assert chunk.content == NOTES.decode() and chunk.tags == [
        "upload",
        "garden",
        "home",
    ]

    indexing.memory_embed_items([chunk.pk])  # what the worker does
    polled = alice_web.get(f"/memory/documents/{attachment.public_id}", **HX)
    assert 'data-status="ready"' in text_of(polled)
    assert "hx-trigger" not in text_of(polled)  # polling stops
    listed = text_of(alice_web.get("/memory/documents", **HX))
    assert "garden.txt" in listed and 'data-status="ready"' in listed


def test_an_unsupported_document_is_refused_beside_the_form(alice, alice_web):
    response = _upload(alice_web, name="x.png", data=b"\x89PNG\r\n\x1a\n" + b"0" * 32)
    assert response.status_code == 415
    assert "unsupported_media_type" in text_of(response)
    assert not Attachment.objects.filter(user=alice).exists()


def test_an_empty_document_is_refused_with_its_code(alice, alice_web):
    response = _upload(alice_web, data=b"")
    assert response.status_code == 400
    assert "empty_document" in text_of(response)


def test_without_a_file_the_form_names_the_field(alice_web):
    response = alice_web.post("/memory/documents/upload", {"tier": "long-term"}, **HX)
    assert response.status_code == 400 and "Document:" in text_of(response)


def test_bob_gets_404_on_alices_documents_and_detail(alice, alice_web, bob_web):
    assert _upload(alice_web).status_code == 200
    attachment = Attachment.objects.get(user=alice)
    item = memory_for(alice, "Alice's secret recipe")
    for path in (
        f"/memory/documents/{attachment.public_id}",
        f"/memory/{item.public_id}",
    ):
        response = bob_web.get(path, **HX)
        assert response.status_code == 404, path
        assert "garden" not in text_of(response) and "recipe" not in text_of(response)
    assert "garden.txt" not in text_of(bob_web.get("/memory/documents", **HX))


def test_bulk_archive_then_delete_the_selected_rows(alice, alice_web):
    a = memory_for(alice, "first of two")
    b = memory_for(alice, "second of two")
    keep = memory_for(alice, "not selected")
    ids = [a.public_id, b.public_id]
    archived = alice_web.post("/memory/bulk", {"action": "archive", "ids": ids}, **HX)
    assert archived.status_code == 200, text_of(archived)
    assert json.loads(archived["HX-Trigger"])["announce"]["message"] == (
        "2 memories archived."
    )
    assert f'id="row-{a.public_id}" class="memory is-archived"' in text_of(archived)
    statuses = {i.pk: i.status for i in MemoryItem.objects.filter(user=alice)}
    assert statuses == {a.pk: "archived", b.pk: "archived", keep.pk: "active"}

    deleted = alice_web.post("/memory/bulk", {"action": "delete", "ids": ids}, **HX)
    assert f'<li id="row-{b.public_id}" hx-swap-oob="delete">' in text_of(deleted)
    assert list(MemoryItem.objects.filter(user=alice)) == [keep]


def test_bulk_with_nothing_selected_or_a_bad_action_is_400(alice, alice_web):
    item = memory_for(alice, "stay")
    nothing = alice_web.post("/memory/bulk", {"action": "archive"}, **HX)
    assert nothing.status_code == 400
    assert "validation_error" in text_of(nothing) and "ids" in text_of(nothing)
    # protect is a bulk action of the API the list does not offer
    protect = alice_web.post(
        "/memory/bulk", {"action": "protect", "ids": [item.public_id]}, **HX
    )
    assert protect.status_code == 400 and "action" in text_of(protect)
    assert not MemoryItem.objects.get(pk=item.pk).protected


def test_bob_gets_404_bulk_on_alices_memories_and_nothing_changes(alice, bob, bob_web):
    item = memory_for(alice, "Alice's secret recipe")
    mine = memory_for(bob, "bob's own")
    for action in ("archive", "delete"):
        response = bob_web.post(
            "/memory/bulk",
            {"action": action, "ids": [mine.public_id, item.public_id]},
            **HX,
        )
        assert response.status_code == 404
        assert "recipe" not in text_of(response)
    assert MemoryItem.objects.get(pk=item.pk).status == "active"
    assert MemoryItem.objects.get(pk=mine.pk).status == "active"  # all or none


def test_a_document_over_the_limit_is_413_with_its_code(alice, alice_web, settings):
    settings.ATTACHMENT_MAX_BYTES = 10
    response = _upload(alice_web)
    assert response.status_code == 413
    assert "payload_too_large" in text_of(response)
    assert not Attachment.objects.filter(user=alice).exists()
