"""Attachments end to end against the real PostgreSQL, Valkey and embedded S3:
each type, sniffing from the bytes, every refusal storing nothing, quota, the
signed download, delete taking everything with it, and alice's documents
invisible to bob."""

from __future__ import annotations

import io
import itertools
import urllib.request
import uuid
import zlib
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from rest_framework.test import APIClient

from audit.models import AuditEvent
from kimberly import storage
from kimberly.context import Actor, Context
from memory import indexing
from memory.attachments import chunking, extract, services
from memory.models import Attachment, MemoryEmbedding, MemoryItem
from memory.quotas import quota_set
from memory.tests.factories import assert_usage_is_exact, ctx_for, used_bytes

pytestmark = pytest.mark.django_db

URL = "/v1/attachments"
NOTES = (
    "Kimberly keeps my garden notes.\n\n"
    "The tomatoes were planted on the fourth of May next to the basil.\n\n"
    "Water the lemon tree every Sunday morning."
)
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06"


def pdf_file(objects: list[bytes]) -> bytes:
    """A PDF file of `objects` (object 1 the catalog) with a correct xref table."""
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % n + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(
        b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
        % (len(objects) + 1, xref)
    )
    return out.getvalue()


def pdf_bytes(lines: list[str]) -> bytes:
    """A small, valid PDF (correct xref) showing `lines` in Helvetica."""
    text = " T* ".join(
        "(" + s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ") Tj"
        for s in lines
    )
    content = f"BT /F1 12 Tf 14 TL 72 720 Td {text} ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica "
        b"/Encoding /WinAnsiEncoding >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
    ]
    return pdf_file(objects)


def upload(
    client: APIClient,
    name: str,
    data: bytes,
    content_type: str = "application/octet-stream",
    **fields: Any,
) -> Any:
    body = {"file": SimpleUploadedFile(name, data, content_type=content_type)}
    return client.post(URL, {**body, **fields}, format="multipart")


def chunks_of(attachment_id: str) -> list[MemoryItem]:
    pk = uuid.UUID(attachment_id.removeprefix("att_"))
    return list(MemoryItem.objects.filter(attachment_id=pk).order_by("content"))


def objects_of(user: Any) -> int:
    """How many attachment objects the user has in the bucket (deleting them)."""
    return storage.delete_prefix(storage.user_prefix(user.pk, "attachments"))


def assert_nothing_stored(user: Any) -> None:
    assert not Attachment.objects.filter(user=user).exists()
    assert not MemoryItem.objects.filter(user=user).exists()
    assert sum(used_bytes(user).values()) == 0
    assert objects_of(user) == 0


def query_ids(client: APIClient, text: str, **extra: Any) -> list[str]:
    resp = client.post(
        "/v1/memory/query", {"query": text, "top_k": 10, **extra}, format="json"
    )
    assert resp.status_code == 200, resp.json()
    return [r["item"]["id"] for r in resp.json()["results"]]


# ------------------------------------------------------------------ each type


def test_a_text_file_becomes_searchable_memories_and_its_object(alice, alice_api):
    resp = upload(alice_api, "garden.txt", NOTES.encode(), "text/plain", tags=["home"])

    assert resp.status_code == 201, resp.json()
    body = resp.json()
    assert body["type"] == "text" and body["filename"] == "garden.txt"
    assert body["size_bytes"] == len(NOTES.encode()) and body["chunks"] == 1
    assert body["tier"] == "long-term" and body["status"] == "indexing"
    chunk = chunks_of(body["id"])[0]
    assert chunk.content == NOTES and chunk.source == "upload"
    assert chunk.tags == ["upload", "garden", "home"]
    assert (
        storage.read_bytes(
            storage.user_key(alice.pk, "attachments", f"{body['id'][4:]}.txt")
        )
        == NOTES.encode()
    )
    assert f"mem_{chunk.pk}" in query_ids(alice_api, "tomatoes planted")
    assert_usage_is_exact(alice)


def test_markdown_is_kept_as_written_and_typed_by_its_extension(alice_api):
    text = "# Recipes\n\n- flour\n- *two* eggs\n\nBake for 20 minutes."
    resp = upload(alice_api, "recipes.md", text.encode(), tier="permanent")

    assert resp.status_code == 201, resp.json()
    assert resp.json()["type"] == "markdown"
    assert resp.json()["content_type"].startswith("text/markdown")
    (chunk,) = chunks_of(resp.json()["id"])
    assert chunk.content == text and chunk.tier == "permanent"


def test_html_is_read_without_tags_scripts_or_styles(alice_api):
    html = (
        "<!DOCTYPE html><html><head><title>Trip plan</title>"
        "<style>body { color: red }</style>"
        "<script>var secret = '</p>'; track();</script></head>"
        "<body><h1>Lisbon</h1><p>Fly out on <b>June&nbsp;3</b> &amp; stay "
        "in Alfama.</p><noscript>enable js</noscript></body></html>"
    )
    resp = upload(alice_api, "trip.html", html.encode())

    assert resp.status_code == 201, resp.json()
    assert resp.json()["type"] == "html"
    (chunk,) = chunks_of(resp.json()["id"])
    assert (
        chunk.content == "Trip plan\n\nLisbon\n\nFly out on June\xa03 & stay in Alfama."
    )
    for leaked in ("<", "color", "secret", "track", "enable js"):
        assert leaked not in chunk.content


def test_pdf_text_is_extracted(alice_api):
    data = pdf_bytes(["Invoice 2041 from the plumber", "Total due: 180 euros"])
    resp = upload(alice_api, "invoice.pdf", data, "application/pdf")

    assert resp.status_code == 201, resp.json()
    assert resp.json()["type"] == "pdf"
    (chunk,) = chunks_of(resp.json()["id"])
    assert "Invoice 2041 from the plumber" in chunk.content
    assert "180 euros" in chunk.content
    assert chunk.tags == ["upload", "invoice"]


def test_a_long_document_is_chunked_on_sentences_with_overlap(alice_api, settings):
    settings.ATTACHMENT_CHUNK_CHARS = 300  # overlap: up to 45 characters
    sentences = [f"Sentence number {n} talks about topic {n}." for n in range(40)]
    resp = upload(alice_api, "long.txt", " ".join(sentences).encode())

    assert resp.status_code == 201, resp.json()
    chunks = sorted(
        (c.content for c in chunks_of(resp.json()["id"])),
        key=lambda c: int(c.split()[2]),
    )
    assert resp.json()["chunks"] == len(chunks) > 5
    assert all(len(c) <= 300 and c.endswith(".") for c in chunks)
    assert all(any(s in c for c in chunks) for s in sentences)
    for before, after in itertools.pairwise(chunks):
        assert before.split(". ")[-1].rstrip(".") in after, "overlap"


def test_chunking_cuts_a_word_longer_than_a_chunk():
    chunks = chunking.chunk_text("start " + "x" * 450 + " end", 200)
    assert chunks == ["start", "x" * 200, "x" * 200, "x" * 50 + " end"]


# ------------------------------------------------------------------- sniffing


def test_a_pdf_named_txt_is_a_pdf(alice_api):
    resp = upload(alice_api, "notes.txt", pdf_bytes(["Hidden PDF text"]), "text/plain")
    assert resp.status_code == 201, resp.json()
    assert resp.json()["type"] == "pdf"
    assert resp.json()["content_type"] == "application/pdf"


def test_a_png_named_txt_is_refused_and_nothing_is_stored(alice, alice_api):
    resp = upload(alice_api, "photo.txt", PNG, "text/plain")
    assert resp.status_code == 415, resp.json()
    assert resp.json()["error"] == "unsupported_media_type"
    assert_nothing_stored(alice)


def test_html_named_md_is_html(alice_api):
    html = "<!doctype html><html><body><p>Not markdown at all</p></body></html>"
    resp = upload(alice_api, "page.md", html.encode(), "text/markdown")
    assert resp.status_code == 201, resp.json()
    assert resp.json()["type"] == "html"
    assert chunks_of(resp.json()["id"])[0].content == "Not markdown at all"


@pytest.mark.parametrize(
    "data",
    [
        b"PK\x03\x04\x14\x00\x00\x00\x08\x00",  # zip
        b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00",  # executable
        b"plain start\x00then binary",  # NUL
        b"caf\xe9 latin-1",  # not UTF-8
        b"text with a bell \x07 in it",
    ],
)
def test_binary_files_are_415_and_store_nothing(alice, alice_api, data):
    resp = upload(alice_api, "file.txt", data, "text/plain")
    assert resp.status_code == 415, resp.json()
    assert_nothing_stored(alice)


# ----------------------------------------------------------------- bad inputs


def test_no_file_field_is_400(alice, alice_api):
    resp = alice_api.post(URL, {"tier": "long-term"}, format="multipart")
    assert resp.status_code == 400
    assert "file" in resp.json()["details"]["fields"]
    assert_nothing_stored(alice)


def test_json_instead_of_multipart_is_415(alice, alice_api):
    resp = alice_api.post(URL, {"file": "hello"}, format="json")
    assert resp.status_code == 415
    assert_nothing_stored(alice)


@pytest.mark.parametrize(
    "name,data",
    [
        ("empty.txt", b""),
        ("blank.md", b"  \n\n\t \n"),
        ("blank.html", b"<html><body><script>x()</script></body></html>"),
        ("blank.pdf", pdf_bytes([])),
    ],
)
def test_an_empty_document_is_400_and_stores_nothing(alice, alice_api, name, data):
    resp = upload(alice_api, name, data)
    assert resp.status_code == 400, resp.json()
    assert resp.json()["error"] == "empty_document"
    assert_nothing_stored(alice)


def test_a_corrupt_pdf_is_400_and_stores_nothing(alice, alice_api):
    data = pdf_bytes(["fine"])[:60] + b"\x00garbage" * 20
    resp = upload(alice_api, "broken.pdf", data)
    assert resp.status_code == 400, resp.json()
    assert resp.json()["error"] == "invalid_document"
    assert_nothing_stored(alice)


@override_settings(ATTACHMENT_MAX_BYTES=100)
def test_a_file_over_the_size_limit_is_413_and_stores_nothing(alice, alice_api):
    resp = upload(alice_api, "big.txt", b"a" * 101)
    assert resp.status_code == 413, resp.json()
    assert resp.json()["error"] == "payload_too_large"
    assert resp.json()["details"]["max_bytes"] == 100
    assert_nothing_stored(alice)
    assert upload(alice_api, "fits.txt", b"a" * 100).status_code == 201


@override_settings(ATTACHMENT_MAX_BYTES=1000)
def test_a_body_far_over_the_limit_is_413_before_it_is_parsed(alice, alice_api):
    resp = upload(alice_api, "huge.txt", b"a" * 200_000)
    assert resp.status_code == 413, resp.json()
    assert resp.json()["error"] == "payload_too_large"
    assert_nothing_stored(alice)


@pytest.mark.parametrize(
    "fields",
    [{"tier": "forever"}, {"tags": [""]}, {"tags": ["x" * 65]}, {"colour": "red"}],
)
def test_bad_form_fields_are_400_and_store_nothing(alice, alice_api, fields):
    resp = upload(alice_api, "a.txt", b"some text", **fields)
    assert resp.status_code == 400, resp.json()
    assert_nothing_stored(alice)


def test_a_file_name_is_cleaned_for_display_only(alice, alice_api):
    resp = upload(alice_api, "..\\..\\etc\\pass\x07wd.txt", b"harmless text")
    assert resp.status_code == 201, resp.json()
    att = Attachment.objects.get(user=alice)
    assert att.filename == "passwd.txt"
    assert att.object_key.endswith(f"/attachments/{att.pk}.txt")


# ---------------------------------------------------------------------- quota


def test_chunks_past_the_hard_limit_are_429_and_nothing_is_stored(alice, alice_api):
    quota_set(
        ctx=Context(Actor.system("test")),
        user_id=alice.pk,
        tier="long-term",
        limit_bytes=2000,
    )
    text = " ".join(f"Fact {n} about the garden." for n in range(200))  # ~5 KB
    resp = upload(alice_api, "facts.txt", text.encode())

    assert resp.status_code == 429, resp.json()
    assert resp.json()["error"] == "quota_exceeded"
    assert resp.json()["details"]["requested_bytes"] > 2500  # the whole document
    assert_nothing_stored(alice)
    assert not AuditEvent.objects.filter(action="attachment.create").exists()


# ---------------------------------------------------------- storage failures


@pytest.fixture
def dead_s3(settings: Any) -> None:
    from kimberly.runtime import common

    port = common.free_port()
    options = settings.STORAGES["default"]["OPTIONS"]
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            **settings.STORAGES["default"],
            "OPTIONS": {**options, "endpoint_url": f"http://127.0.0.1:{port}"},
        },
    }


def test_storage_down_is_503_and_nothing_is_kept(alice, alice_api, dead_s3):
    resp = upload(alice_api, "notes.txt", NOTES.encode())
    assert resp.status_code == 503, resp.json()
    assert resp.json()["error"] == "storage_unavailable"
    assert not Attachment.objects.filter(user=alice).exists()
    assert not MemoryItem.objects.filter(user=alice).exists()
    assert sum(used_bytes(alice).values()) == 0


def test_an_upload_whose_commit_fails_leaves_no_object(alice, monkeypatch):
    real_put = storage.put_bytes

    def put_then_fail(key: str, data: bytes, content_type: str) -> None:
        real_put(key, data, content_type)
        raise RuntimeError("the commit after the upload failed")

    monkeypatch.setattr(storage, "put_bytes", put_then_fail)
    with pytest.raises(RuntimeError):
        services.attachment_create(
            ctx=ctx_for(alice),
            user=alice,
            data=NOTES.encode(),
            filename="n.txt",
            tier="long-term",
        )
    assert_nothing_stored(alice)


# ---------------------------------------------------------- list, get, delete


def test_list_is_newest_first_and_get_downloads_the_original_bytes(alice_api):
    pdf = pdf_bytes(["Passport renewal in March"])
    first = upload(alice_api, "a.txt", b"first document").json()
    second = upload(alice_api, "Passport scan.pdf", pdf).json()

    listed = alice_api.get(URL).json()
    assert [a["id"] for a in listed["items"]] == [second["id"], first["id"]]
    assert listed["total"] == 2 and "download_url" not in listed["items"][0]

    detail = alice_api.get(f"{URL}/{second['id']}")
    assert detail.status_code == 200
    body = detail.json()
    assert body["sha256"] == second["sha256"] and body["download_expires_in"] > 0
    with urllib.request.urlopen(body["download_url"], timeout=5) as got:
        assert got.read() == pdf
        assert got.headers["Content-Disposition"].startswith("attachment;")
        assert "Passport scan.pdf" in got.headers["Content-Disposition"]


def test_delete_removes_object_chunks_vectors_and_quota(
    alice, alice_api, settings, django_capture_on_commit_callbacks
):
    settings.ATTACHMENT_CHUNK_CHARS = 200
    text = " ".join(f"The blue heron visited the pond on day {n}." for n in range(30))
    att = upload(alice_api, "herons.txt", text.encode()).json()
    chunks = chunks_of(att["id"])
    assert len(chunks) > 3
    assert indexing.memory_embed_items([c.pk for c in chunks]) == len(chunks)
    assert alice_api.get(f"{URL}/{att['id']}").json()["status"] == "ready"
    key = Attachment.objects.get(pk=att["id"][4:]).object_key
    kept = upload(alice_api, "other.txt", b"A note that stays.").json()

    with django_capture_on_commit_callbacks(execute=True):
        resp = alice_api.delete(f"{URL}/{att['id']}")

    assert resp.status_code == 204
    assert alice_api.get(f"{URL}/{att['id']}").status_code == 404
    assert not MemoryItem.objects.filter(pk__in=[c.pk for c in chunks]).exists()
    assert not MemoryEmbedding.objects.filter(item_id__in=[c.pk for c in chunks])
    with pytest.raises(storage.ObjectNotFound):
        storage.read_bytes(key)
    assert query_ids(alice_api, "blue heron pond") == []
    assert [c.pk for c in chunks_of(kept["id"])] != []
    assert_usage_is_exact(alice)
    actions = list(
        AuditEvent.objects.filter(user_id=alice.pk).values_list("action", flat=True)
    )
    assert actions.count("attachment.create") == 2
    assert actions.count("attachment.delete") == 1
    assert all(
        "heron" not in str(e.details)
        for e in AuditEvent.objects.filter(user_id=alice.pk)
    )


def test_chunks_are_found_by_meaning_once_embedded(alice, alice_api):
    att = upload(alice_api, "garden.txt", NOTES.encode()).json()
    ids = [c.pk for c in chunks_of(att["id"])]
    assert indexing.memory_embed_items(ids) == len(ids)

    found = query_ids(alice_api, "when did I put the vegetables in the ground")
    assert found[:1] == [f"mem_{ids[0]}"]


def test_deleting_a_chunk_alone_keeps_the_attachment(alice, alice_api):
    att = upload(alice_api, "garden.txt", NOTES.encode()).json()
    (chunk,) = chunks_of(att["id"])
    assert alice_api.delete(f"/v1/memory/mem_{chunk.pk}").status_code == 204
    assert alice_api.get(f"{URL}/{att['id']}").status_code == 200
    assert_usage_is_exact(alice)


def test_deleting_the_user_takes_attachments_and_chunks(alice, alice_api):
    upload(alice_api, "garden.txt", NOTES.encode())
    alice.delete()
    assert not Attachment.objects.exists() and not MemoryItem.objects.exists()


# -------------------------------------------------------------------- persona


def test_bob_gets_404_on_alices_attachment_and_never_sees_her_chunks(
    alice, alice_api, bob_api
):
    att = upload(alice_api, "garden.txt", NOTES.encode()).json()
    indexing.memory_embed_items([c.pk for c in chunks_of(att["id"])])

    assert bob_api.get(f"{URL}/{att['id']}").status_code == 404
    assert bob_api.delete(f"{URL}/{att['id']}").status_code == 404
    assert bob_api.get(URL).json()["items"] == []
    assert query_ids(bob_api, "tomatoes planted basil") == []
    assert query_ids(bob_api, "when did I put the vegetables in the ground") == []
    assert alice_api.get(f"{URL}/{att['id']}").status_code == 200
    for bad in ("att_nope", f"att_{uuid.uuid4()}", "mem_x"):
        assert alice_api.get(f"{URL}/{bad}").status_code == 404


def test_the_html_sniffer_does_not_mistake_text_for_markup():
    assert extract.extract(b"<3 my plants\nmore text", "a.txt").kind.name == "text"
    assert extract.extract(b"<p>a</p><p>b</p><div>c</div>", "a.txt").kind.name == (
        "html"
    )


def test_the_admin_lists_attachments_read_only(admin_client, alice_api):
    att = upload(alice_api, "garden.txt", NOTES.encode()).json()
    pk = att["id"][4:]
    listing = admin_client.get("/admin/memory/attachment/")
    assert listing.status_code == 200 and b"garden.txt" in listing.content
    assert admin_client.get(f"/admin/memory/attachment/{pk}/delete/").status_code == 403


def _shared_stream_pdf(pages: int, content: bytes, padding: int = 0) -> bytes:
    """`pages` pages all drawing ONE shared (compressed) content stream, plus an
    unreferenced stream of `padding` random-ish bytes."""
    packed = zlib.compress(content, 9)
    kids = " ".join(f"{6 + i} 0 R" for i in range(pages)).encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % pages,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(packed)
        + packed
        + b"\nendstream",
        b"<< /Length %d >>\nstream\n" % padding
        + bytes(range(256)) * (padding // 256)
        + b"\nendstream",
    ]
    objects += [
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 3 0 R >> >> /Contents 4 0 R >>"
    ] * pages
    return pdf_file(objects)


def test_a_small_pdf_that_expands_into_megabytes_of_text_is_413(
    alice: Any, alice_api: Any
) -> None:
    line = b"(" + b"Lorem ipsum dolor sit amet. " * 4 + b") Tj T* "
    content = b"BT /F1 12 Tf 14 TL 72 720 Td " + line * 2000 + b"ET"
    data = _shared_stream_pdf(20, content)  # ~4.5 KB: 20 pages share one stream
    assert len(data) < 10_000
    r = upload(alice_api, "bomb.pdf", data)
    assert (r.status_code, r.json()["error"]) == (413, "document_too_large")
    assert not MemoryItem.objects.filter(user=alice).exists()


@override_settings(ATTACHMENT_MAX_PDF_PAGES=3)
def test_a_pdf_over_the_page_limit_is_413(alice: Any, alice_api: Any) -> None:
    data = _shared_stream_pdf(4, b"BT /F1 12 Tf 72 720 Td (Hi.) Tj ET")
    r = upload(alice_api, "long.pdf", data)
    assert (r.status_code, r.json()["error"]) == (413, "document_too_large")
    assert not MemoryItem.objects.filter(user=alice).exists()
