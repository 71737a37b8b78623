"""POST /v1/memory/import and the import jobs, against the real servers."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.utils import timezone

from audit.models import AuditEvent
from kimberly import storage
from memory import tasks
from memory.imports import services as import_services
from memory.models import MemoryImport, MemoryItem
from memory.tests.chatgpt_export import chatgpt_export
from memory.tests.factories import assert_usage_is_exact, grant, memory_for, used_bytes

pytestmark = pytest.mark.django_db

URL = "/v1/memory/import"
SMALL_QUOTAS = override_settings(
    MEMORY_QUOTA_DEFAULTS={"short-term": 1000, "long-term": 1000, "permanent": 1000}
)
T0 = datetime(2021, 5, 1, 9, 30, tzinfo=UTC)


def _upload(api: Any, body: bytes | str, **fields: str) -> Any:
    raw = body.encode() if isinstance(body, str) else body
    payload = {"file": SimpleUploadedFile("export.json", raw), **fields}
    return api.post(URL, payload, format="multipart")


def _json_list(n: int = 3, **extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "content": f"Imported note number {i} about the lighthouse",
            "created_at": (T0 + timedelta(days=i)).isoformat(),
            **extra,
        }
        for i in range(n)
    ]


def _transcript(n_user: int = 2) -> str:
    lines = [
        {
            "kimberly_transcript": 1,
            "conversation_id": f"conv_{uuid.uuid4()}",
            "title": "Plans",
            "created_at": T0.isoformat(),
        }
    ]
    for i in range(n_user):
        at = T0 + timedelta(minutes=2 * i)
        lines.append(
            {
                "id": f"msg_{uuid.uuid4()}",
                "role": "user",
                "content": f"Transcript message {i} about the orchard",
                "created_at": at.isoformat(),
            }
        )
        lines.append(
            {
                "id": f"msg_{uuid.uuid4()}",
                "role": "assistant",
                "content": "Noted.",
                "created_at": (at + timedelta(seconds=5)).isoformat(),
                "context": [f"mem_{uuid.uuid4()}"],
            }
        )
    return "\n".join(json.dumps(line) for line in lines) + "\n"


def _state(user: Any) -> tuple[int, dict[str, int], int]:
    return (
        MemoryItem.objects.filter(user=user).count(),
        used_bytes(user),
        MemoryImport.objects.filter(user=user).count(),
    )


def _ok(resp: Any, status: int = 201) -> dict[str, Any]:
    assert resp.status_code == status, resp.json()
    return dict(resp.json())


# ------------------------------------------------------------------ formats


def test_a_json_list_keeps_its_original_times(alice_api, alice):
    body = _ok(_upload(alice_api, json.dumps(_json_list(3)), format="json"))
    assert body["status"] == "succeeded"
    assert body["id"].startswith("imp_")
    assert (body["total"], body["processed"], body["imported"]) == (3, 3, 3)
    assert (body["skipped_duplicate"], body["refused"]) == (0, 0)
    items = MemoryItem.objects.filter(user=alice).order_by("created_at")
    assert [i.created_at for i in items] == [T0 + timedelta(days=n) for n in range(3)]
    assert all(i.updated_at == i.created_at for i in items)
    assert {(i.source, i.created_by, i.tier) for i in items} == {
        ("import", "user", "long-term")
    }
    assert all(i.external_id.startswith("json:") for i in items)
    assert_usage_is_exact(alice)
    # one memory.create per memory, and the import itself
    events = AuditEvent.objects.filter(user_id=alice.pk)
    assert events.filter(action="memory.create").count() == 3
    assert events.get(action="memory.import").details["imported"] == 3


def test_a_json_record_may_set_its_tier_metadata_and_external_id(alice_api, alice):
    grant(alice, "sensitive_memory")
    records = [
        {
            "content": "Passport number is in the blue folder",
            "created_at": "2020-01-02T03:04:05+02:00",
            "tier": "permanent",
            "metadata": {"tags": ["papers"], "source": "api", "sensitive": True},
            "external_id": "notes:17",
        }
    ]
    _ok(alice_api.post(URL, {"data": records}, format="json"))
    item = MemoryItem.objects.get(user=alice)
    assert (item.tier, item.tags, item.sensitive) == ("permanent", ["papers"], True)
    assert item.source == "import"  # whatever the file says
    assert item.external_id == "notes:17"
    assert item.created_at == datetime(2020, 1, 2, 1, 4, 5, tzinfo=UTC)


def test_a_chatgpt_export_imports_what_the_user_wrote_when_they_wrote_it(
    alice_api, alice
):
    export, wanted = chatgpt_export(user_messages=7, per_conversation=3)
    body = _ok(_upload(alice_api, json.dumps(export), format="chatgpt"))
    assert (body["total"], body["imported"]) == (7, 7)
    # hidden system message and custom instructions, replies, the tool call
    assert body["skipped"]["assistant_message"] > 0
    assert body["skipped"]["system_message"] == len(export)
    assert body["skipped"]["hidden_message"] == len(export)  # custom instructions
    assert body["skipped"]["tool_message"] >= 1
    items = {i.external_id: i for i in MemoryItem.objects.filter(user=alice)}
    for msg_id, text, epoch in wanted:
        item = items[f"chatgpt:{msg_id}"]
        assert item.content == text
        assert item.created_at == datetime.fromtimestamp(epoch, UTC)
        assert item.tags == ["import", "chatgpt"]
    assert not any("Porto" in i.content or "Sure." in i.content for i in items.values())


def test_a_transcript_imports_the_user_lines(alice_api, alice):
    body = _ok(_upload(alice_api, _transcript(2), format="kimberly", tier="short-term"))
    assert (body["imported"], body["skipped"]) == (2, {"assistant_message": 2})
    items = MemoryItem.objects.filter(user=alice).order_by("created_at")
    assert [i.content for i in items] == [
        "Transcript message 0 about the orchard",
        "Transcript message 1 about the orchard",
    ]
    assert items[1].created_at == T0 + timedelta(minutes=2)
    assert {(i.tier, tuple(i.tags)) for i in items} == {
        ("short-term", ("import", "transcript"))
    }
    assert all(i.external_id.startswith("kimberly:msg_") for i in items)


@pytest.mark.parametrize("fmt", ["json", "chatgpt", "kimberly"])
def test_reimporting_a_file_stores_nothing_new(alice_api, alice, fmt):
    files = {
        "json": json.dumps(_json_list(4)),
        "chatgpt": json.dumps(chatgpt_export(user_messages=4)[0]),
        "kimberly": _transcript(4),
    }
    first = _ok(_upload(alice_api, files[fmt]))
    before = _state(alice)
    again = _ok(_upload(alice_api, files[fmt]))
    assert first["imported"] == 4
    assert (again["imported"], again["skipped_duplicate"]) == (0, 4)
    items, usage, imports = _state(alice)
    assert (items, usage, imports) == (before[0], before[1], before[2] + 1)


def test_the_format_is_sniffed_from_the_content(alice_api):
    sniffed = [
        _ok(_upload(alice_api, body))["format"]
        for body in (
            json.dumps(_json_list(1)),
            json.dumps(chatgpt_export(user_messages=1)[0]),
            _transcript(1),
        )
    ]
    assert sniffed == ["json", "chatgpt", "kimberly"]
    as_json = alice_api.post(URL, {"data": _transcript(1)}, format="json")
    assert _ok(as_json)["format"] == "kimberly"


def test_a_record_over_the_size_limit_is_refused_and_the_rest_imported(
    alice_api, alice
):
    records = _json_list(2)
    records[1]["content"] = "x" * (64 * 1024 + 1)
    body = _ok(alice_api.post(URL, {"data": records}, format="json"))
    assert (body["imported"], body["refused"]) == (1, 1)
    assert body["refusals"] == [
        {
            "record": 1,
            "external_id": body["refusals"][0]["external_id"],
            "reason": "content_too_large",
        }
    ]


# -------------------------------------------------------------- bad input


BAD_FILES: dict[str, tuple[str | bytes, dict[str, str], dict[str, Any]]] = {
    "not JSON": ("{not json", {}, {"record": None, "field": "file"}),
    "not UTF-8": (b"\xff\xfe\x00[", {}, {"record": None, "field": "file"}),
    "top level an object": ('{"a": 1}', {}, {"record": None, "field": "file"}),
    "json format of an object": ('{"a": 1}', {"format": "json"}, {"field": "file"}),
    "missing content": (
        json.dumps([*_json_list(2), {"created_at": T0.isoformat()}]),
        {},
        {"record": 2, "field": "content"},
    ),
    "bad created_at": (
        json.dumps([*_json_list(1), {"content": "x", "created_at": "yesterday"}]),
        {},
        {"record": 1, "field": "created_at"},
    ),
    "created_at without offset": (
        json.dumps([{"content": "x", "created_at": "2021-05-01T09:30:00"}]),
        {},
        {"record": 0, "field": "created_at"},
    ),
    "created_at in the future": (
        json.dumps([{"content": "x", "created_at": "2999-01-01T00:00:00Z"}]),
        {},
        {"record": 0, "field": "created_at"},
    ),
    "bad tier": (
        json.dumps([*_json_list(1), {**_json_list(1)[0], "tier": "forever"}]),
        {},
        {"record": 1, "field": "tier"},
    ),
    "bad metadata": (
        json.dumps(_json_list(1, metadata={"tags": "x"})),
        {},
        {"record": 0, "field": "metadata.tags"},
    ),
    "unknown record field": (
        json.dumps(_json_list(1, mood="happy")),
        {},
        {"record": 0, "field": "mood"},
    ),
    "transcript without header": (
        "\n".join(_transcript(2).splitlines()[1:]),
        {"format": "kimberly"},
        {"record": None, "line": 1, "field": "header"},
    ),
    "transcript of another version": (
        _transcript(1).replace('"kimberly_transcript": 1', '"kimberly_transcript": 2'),
        {},
        {"line": 1, "field": "kimberly_transcript"},
    ),
    "transcript with a bad line": (
        _transcript(2) + "{oops\n",
        {},
        {"record": 4, "line": 6, "field": "line"},
    ),
    "chatgpt message without a time": (
        json.dumps(
            [
                {
                    "title": "t",
                    "create_time": None,
                    "mapping": {
                        "a": {
                            "message": {
                                "id": "m1",
                                "author": {"role": "user"},
                                "create_time": None,
                                "content": {"content_type": "text", "parts": ["hi"]},
                            }
                        }
                    },
                }
            ]
        ),
        {},
        {"record": 0, "field": "mapping.a.message.create_time"},
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_malformed_file_is_a_400_naming_the_first_bad_record_and_stores_nothing(
    alice_api, alice, case
):
    memory_for(alice, "Something already remembered")
    body, fields, expected = BAD_FILES[case]
    before = _state(alice)
    resp = _upload(alice_api, body, **fields)
    assert resp.status_code == 400, resp.json()
    err = resp.json()
    assert err["error"] == "invalid_import"
    assert {k: err["details"].get(k) for k in expected} == expected
    assert _state(alice) == before


def test_an_unknown_format_is_a_400(alice_api, alice):
    resp = _upload(alice_api, json.dumps(_json_list(1)), format="csv")
    assert resp.status_code == 400
    assert "format" in resp.json()["details"]["fields"]
    assert _state(alice) == (0, used_bytes(alice), 0)


@override_settings(IMPORT_MAX_BYTES=1000)
def test_a_file_over_the_limit_is_a_413_and_stores_nothing(alice_api, alice):
    resp = _upload(alice_api, json.dumps(_json_list(40)))
    assert resp.status_code == 413
    assert resp.json()["error"] == "payload_too_large"
    assert resp.json()["details"]["max_bytes"] == 1000
    assert _state(alice) == (0, used_bytes(alice), 0)


@SMALL_QUOTAS
def test_a_synchronous_import_over_the_quota_is_a_429_and_stores_nothing(
    alice_api, alice
):
    memory_for(alice, "A memory that was there before")
    before = _state(alice)
    resp = _upload(alice_api, json.dumps(_json_list(12)))
    assert resp.status_code == 429
    assert resp.json()["error"] == "quota_exceeded"
    assert _state(alice) == before
    assert not AuditEvent.objects.filter(user_id=alice.pk, action="memory.import")


# ---------------------------------------------------------------- the job


@SMALL_QUOTAS
@override_settings(IMPORT_SYNC_MAX_RECORDS=5, IMPORT_BATCH_SIZE=4)
def test_a_large_import_runs_as_a_job_with_progress_and_refusals(
    alice_api, alice, django_capture_on_commit_callbacks
):
    records = _json_list(12)  # ~120 bytes each: about 10 fit under 1,250
    with django_capture_on_commit_callbacks(execute=False) as sent:
        resp = alice_api.post(URL, {"data": records, "format": "json"}, format="json")
    queued = _ok(resp, 202)
    assert (queued["status"], queued["total"], queued["processed"]) == ("queued", 12, 0)
    assert len(sent) == 1  # the job, after commit
    imp = MemoryImport.objects.get(user=alice)
    assert imp.file_key.startswith(f"users/{alice.pk}/imports/{imp.id}.")
    assert storage.read_bytes(imp.file_key)
    assert MemoryItem.objects.filter(user=alice).count() == 0

    assert tasks.import_run(queued["id"].removeprefix("imp_")) == "succeeded"
    done = _ok(alice_api.get(f"/v1/memory/imports/{queued['id']}"), 200)
    assert done["status"] == "succeeded" and done["finished_at"]
    assert done["processed"] == 12
    assert done["imported"] + done["refused"] == 12
    assert done["imported"] == MemoryItem.objects.filter(user=alice).count() > 0
    assert done["refused"] > 0
    assert {r["reason"] for r in done["refusals"]} == {"quota_exceeded"}
    assert done["refusals"][0]["record"] == done["imported"]  # in file order
    assert_usage_is_exact(alice)
    with pytest.raises(storage.ObjectNotFound):
        storage.read_bytes(imp.file_key)
    # delivered again: the claim keeps it from running twice
    assert tasks.import_run(str(imp.id)) == "done"


@override_settings(IMPORT_SYNC_MAX_RECORDS=2, IMPORT_BATCH_SIZE=2)
def test_a_job_hands_over_and_resumes_where_it_stopped(
    alice_api, alice, monkeypatch, django_capture_on_commit_callbacks
):
    sent: list[uuid.UUID] = []
    monkeypatch.setattr(import_services, "_send", sent.append)
    export, _ = chatgpt_export(user_messages=5)
    with django_capture_on_commit_callbacks(execute=True):
        queued = _ok(_upload(alice_api, json.dumps(export)), 202)
    pk = queued["id"].removeprefix("imp_")
    assert len(sent) == 1
    # no time left after the first batch: a fresh task is sent for the rest
    assert (
        import_services.memory_import_run(import_id=pk, budget_seconds=0)
        == "handed_over"
    )
    imp = MemoryImport.objects.get(pk=pk)
    assert (imp.status, imp.processed, imp.imported) == ("queued", 2, 2)
    assert len(sent) == 2
    assert tasks.import_run(pk) == "succeeded"
    imp.refresh_from_db()
    assert (imp.processed, imp.imported, imp.skipped_duplicate) == (5, 5, 0)


@override_settings(IMPORT_SYNC_MAX_RECORDS=1)
def test_a_running_job_is_claimed_again_only_once_its_worker_is_silent(
    alice_api, alice, monkeypatch
):
    monkeypatch.setattr(import_services, "_send", lambda pk: None)
    queued = _ok(alice_api.post(URL, {"data": _json_list(3)}, format="json"), 202)
    pk = queued["id"].removeprefix("imp_")
    MemoryImport.objects.filter(pk=pk).update(
        status="running", heartbeat_at=timezone.now()
    )
    with pytest.raises(import_services.ImportBusy):
        import_services.memory_import_run(import_id=pk, budget_seconds=60)
    silent = timezone.now() - timedelta(seconds=import_services.STALE_SECONDS + 1)
    MemoryImport.objects.filter(pk=pk).update(heartbeat_at=silent)
    assert (
        import_services.memory_import_run(import_id=pk, budget_seconds=60)
        == "succeeded"
    )
    assert MemoryItem.objects.filter(user=alice).count() == 3


@override_settings(IMPORT_SYNC_MAX_RECORDS=1)
def test_a_job_whose_file_is_gone_fails_and_says_so(alice_api, alice, monkeypatch):
    monkeypatch.setattr(import_services, "_send", lambda pk: None)
    queued = _ok(alice_api.post(URL, {"data": _json_list(3)}, format="json"), 202)
    imp = MemoryImport.objects.get(user=alice)
    storage.delete(imp.file_key)
    assert tasks.import_run(str(imp.id)) == "failed"
    failed = _ok(alice_api.get(f"/v1/memory/imports/{queued['id']}"), 200)
    assert failed["status"] == "failed" and failed["error"]
    assert MemoryItem.objects.filter(user=alice).count() == 0


def test_a_job_of_a_deleted_import_does_nothing():
    assert tasks.import_run(str(uuid.uuid4())) == "gone"


# ------------------------------------------------------- personas, search


def test_bob_never_sees_alices_imports(alice_api, bob_api):
    imp = _ok(_upload(alice_api, json.dumps(_json_list(1))))
    assert bob_api.get(f"/v1/memory/imports/{imp['id']}").status_code == 404
    assert bob_api.get("/v1/memory/imports").json()["total"] == 0
    listed = alice_api.get("/v1/memory/imports").json()
    assert [i["id"] for i in listed["items"]] == [imp["id"]]
    for bad_id in ("imp_nope", str(uuid.uuid4()), f"mem_{uuid.uuid4()}"):
        assert alice_api.get(f"/v1/memory/imports/{bad_id}").status_code == 404


def test_imported_memories_are_found_by_query(alice_api, alice):
    alice.embedding_enabled = False  # lexical retrieval: no model needed here
    alice.save(update_fields=["embedding_enabled"])
    export, _ = chatgpt_export(
        user_messages=3, texts=["My cello teacher is called Ingrid"]
    )
    _ok(_upload(alice_api, json.dumps(export)))
    resp = alice_api.post("/v1/memory/query", {"query": "cello teacher"}, format="json")
    assert resp.status_code == 200
    hits = [r["item"] for r in resp.json()["results"]]
    assert hits[0]["content"] == "My cello teacher is called Ingrid"
    assert hits[0]["metadata"]["source"] == "import"


@override_settings(IMPORT_MAX_BYTES=10)
def test_a_body_announced_over_the_limit_is_refused_before_it_is_read(alice_api):
    resp = _upload(alice_api, json.dumps(_json_list(1)) + " " * 70_000)
    assert resp.status_code == 413
    assert resp.json()["error"] == "payload_too_large"
    assert resp.json()["details"]["size_bytes"] > 70_000


def test_a_transcript_line_may_hold_a_unicode_line_separator(alice_api, alice):
    lines = _transcript(1).splitlines()
    msg = json.loads(lines[1])
    msg["content"] = "first\u2028second"
    lines[1] = json.dumps(msg, ensure_ascii=False)
    _ok(_upload(alice_api, "\n".join(lines)))
    assert MemoryItem.objects.get(user=alice).content == "first\u2028second"


@override_settings(IMPORT_SYNC_MAX_RECORDS=1)
def test_a_job_whose_file_cannot_be_kept_is_a_503_and_stores_nothing(
    alice_api, alice, dead_s3
):
    resp = alice_api.post(URL, {"data": _json_list(3)}, format="json")
    assert resp.status_code == 503
    assert resp.json()["error"] == "storage_unavailable"
    assert _state(alice) == (0, used_bytes(alice), 0)
