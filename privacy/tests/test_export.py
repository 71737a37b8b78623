"""GDPR export against the real servers: the job writes a zip into S3 whose parts
hold every kind of alice's data and none of bob's, valid against the schema."""

from __future__ import annotations

import csv
import io
import json
import urllib.request
import zipfile
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone
from jsonschema import Draft202012Validator, FormatChecker

from agents.models import AgentTask, Event, Reminder
from audit.models import AuditEvent
from kimberly import storage
from memory.attachments.services import attachment_create
from memory.imports.services import memory_import_start
from memory.services import goal_create, memory_update
from memory.tests.factories import ctx_for, memory_for
from privacy.exports import services
from privacy.exports.models import DataExport
from privacy.exports.schema import export_schema, part_defs

pytestmark = pytest.mark.django_db

PARTS = list(part_defs())


def _data_of(user: Any, api: Any, word: str) -> None:
    """One of every kind of data, each carrying `word` so a leak is visible."""
    ctx = ctx_for(user)
    item = memory_for(user, f"{word} likes green tea")
    memory_update(ctx=ctx, user=user, memory_id=item.public_id, content=f"{word} tea")
    memory_for(user, f"{word} archived note", archived=True)
    memory_for(user, f"{word} short note", tier="short-term")
    assert (
        api.post(
            "/v1/user/consents", {"purpose": "telemetry"}, format="json"
        ).status_code
        == 201
    )
    api.delete("/v1/user/consents/telemetry")
    api.post("/v1/user/consents", {"purpose": "telemetry"}, format="json")
    goal_create(ctx=ctx, user=user, text=f"{word} learns Portuguese")
    attachment_create(
        ctx=ctx,
        user=user,
        data=f"# {word} notes\n\nThe {word} plan for spring.".encode(),
        filename=f"{word}-notes.md",
        tier="long-term",
    )
    memory_import_start(
        ctx=ctx,
        user=user,
        tier="long-term",
        fmt="json",
        data=[{"content": f"{word} imported", "created_at": "2021-05-01T09:30:00Z"}],
    )
    assert (
        api.post("/v1/chat", {"message": f"hi from {word}"}, format="json").status_code
        == 200
    )
    task = AgentTask.objects.create(
        user=user,
        agent="reminder",
        task=f"{word} remind me",
        timeout=60,
        status="succeeded",
        result={"said": word},
        trace=[{"step": 1, "note": word}],
    )
    Reminder.objects.create(
        user=user,
        task=task,
        what=f"{word} call",
        due_at=timezone.now(),
        time_zone="UTC",
    )
    Event.objects.create(
        user=user,
        uid=f"{word}-1",
        title=f"{word} dentist",
        starts_at=timezone.now(),
        source="text",
    )


def _run(user: Any, fmt: str = "json") -> DataExport:
    export = services.export_request(ctx=ctx_for(user), user=user, fmt=fmt)
    done = services.export_run(export_id=str(export.pk))
    assert done is not None
    return done


def _zip(export: DataExport) -> zipfile.ZipFile:
    """The zip as stored in S3, downloaded through its signed URL."""
    url = services.export_download_url(export)
    assert url
    with urllib.request.urlopen(url, timeout=10) as resp:
        return zipfile.ZipFile(io.BytesIO(resp.read()))


def _validator(ref: str | None = None, *, array: bool = False) -> Draft202012Validator:
    schema = export_schema()
    if ref:
        item = {"$ref": f"#/$defs/{ref}"}
        schema = {
            "$defs": schema["$defs"],
            **({"type": "array", "items": item} if array else item),
        }
    return Draft202012Validator(schema, format_checker=FormatChecker())


def test_a_json_export_holds_every_part_of_alice_and_nothing_of_bob(
    alice, bob, alice_api, bob_api
):
    _data_of(alice, alice_api, "alice")
    _data_of(bob, bob_api, "bob")
    export = _run(alice)
    assert export.status == "succeeded" and export.parts_done == export.parts_total
    z = _zip(export)
    assert export.size_bytes == len(storage.read_bytes(export.object_key))
    manifest = json.loads(z.read("manifest.json"))
    _validator().validate(manifest)
    assert (
        manifest["user_id"] == str(alice.pk)
        and manifest["export_id"] == export.public_id
    )
    listed = {f["path"] for f in manifest["files"]}
    assert listed | {"manifest.json"} == set(z.namelist())
    parts = {}
    for part, ref in part_defs().items():
        parts[part] = json.loads(z.read(f"{part}.json"))
        _validator(ref, array=True).validate(parts[part])
        assert manifest["counts"][part] == len(parts[part]), part
    every = b"".join(z.read(name) for name in z.namelist())
    assert b"bob" not in every  # no row, file or word of bob's
    profile = parts["profile"][0]
    assert profile["email"] == "alice@example.com" and "password" not in profile
    assert "webhook_secret" not in profile
    memories = {m["content"]: m for m in parts["memories"]}
    assert {"alice tea", "alice archived note", "alice short note"} <= set(memories)
    assert memories["alice archived note"]["status"] == "archived"
    assert [v["content"] for v in memories["alice tea"]["versions"]] == [
        "alice likes green tea"
    ]
    assert parts["goals"][0]["text"] == "alice learns Portuguese"
    assert parts["imports"][0]["imported"] == 1
    assert {q["tier"] for q in parts["quotas"]} == {
        "short-term",
        "long-term",
        "permanent",
    }
    # the ledger: granted, withdrawn, granted again
    assert [
        (c["purpose"], c["granted"], c["withdrawn_at"] is None)
        for c in parts["consents"]
    ] == [
        ("telemetry", False, False),
        ("telemetry", True, True),
    ]
    # conversations, messages and the transcript object
    (conv,) = parts["conversations"]
    assert [m["role"] for m in parts["messages"]] == ["user", "assistant"]
    transcript = z.read(conv["transcript"]).decode().splitlines()
    assert json.loads(transcript[0])["conversation_id"] == conv["id"]
    assert "hi from alice" in transcript[1]
    # the attachment as uploaded
    (att,) = parts["attachments"]
    assert z.read(att["file"]).decode().startswith("# alice notes")
    (task,) = parts["agent_tasks"]
    assert task["result"] == {"said": "alice"} and task["trace"][0]["note"] == "alice"
    assert parts["reminders"][0]["task_id"] == task["id"]
    assert parts["events"][0]["title"] == "alice dentist"
    actions = [e["action"] for e in parts["audit_events"]]
    assert "memory.create" in actions and "privacy.export_request" in actions
    assert [e["seq"] for e in parts["audit_events"]] == sorted(
        e["seq"] for e in parts["audit_events"]
    )
    assert json.loads(z.read("export.schema.json")) == export_schema()


def test_a_csv_export_has_one_table_per_part_with_the_schema_columns(alice, alice_api):
    _data_of(alice, alice_api, "alice")
    export = _run(alice, "csv")
    z = _zip(export)
    manifest = json.loads(z.read("manifest.json"))
    _validator().validate(manifest)
    schema = export_schema()["$defs"]
    for part, ref in part_defs().items():
        rows = list(csv.reader(io.StringIO(z.read(f"{part}.csv").decode())))
        assert rows[0] == list(schema[ref]["properties"]), part
        assert len(rows) - 1 == manifest["counts"][part], part
    memories = list(csv.DictReader(io.StringIO(z.read("memories.csv").decode())))
    tea = next(m for m in memories if m["content"] == "alice tea")
    assert json.loads(tea["versions"])[0]["content"] == "alice likes green tea"
    assert tea["archived_at"] == "" and tea["protected"] == "false"


def test_the_api_queues_an_export_and_shows_its_download_link(
    alice, alice_api, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        r = alice_api.post("/v1/user/export", {"format": "json"}, format="json")
    assert r.status_code == 202, r.content
    body = r.json()
    assert body["export_id"].startswith("exp_") and body["status"] == "queued"
    assert body["download_url"] is None
    assert len(callbacks) == 1  # the job is sent after the commit
    services.export_run(export_id=body["export_id"].removeprefix("exp_"))
    r = alice_api.get(f"/v1/user/export/{body['export_id']}")
    assert r.status_code == 200
    done = r.json()
    assert done["status"] == "succeeded" and done["size_bytes"] > 0
    assert done["progress"]["parts_done"] == done["progress"]["parts_total"] > 0
    with urllib.request.urlopen(done["download_url"], timeout=10) as resp:
        assert zipfile.ZipFile(io.BytesIO(resp.read())).read("manifest.json")
    assert (
        alice_api.get("/v1/user/exports").json()["items"][0]["export_id"]
        == (body["export_id"])
    )
    actions = set(
        AuditEvent.objects.filter(user_id=alice.pk).values_list("action", flat=True)
    )
    assert {"privacy.export_request", "privacy.export_ready"} <= actions


def test_a_second_request_within_the_cooldown_is_429_but_not_after_a_failure(
    alice, alice_api
):
    first = alice_api.post("/v1/user/export", {"format": "csv"}, format="json")
    assert first.status_code == 202
    again = alice_api.post("/v1/user/export", {"format": "json"}, format="json")
    assert again.status_code == 429
    assert again.json()["error"] == "export_cooldown"
    assert 23 * 3600 < int(again["Retry-After"]) <= 24 * 3600
    assert DataExport.objects.filter(user=alice).count() == 1
    services.export_fail(export_id=first.json()["export_id"][4:], error="boom")
    assert alice_api.post("/v1/user/export", {}, format="json").status_code == 202


def test_a_bad_format_is_400_and_queues_nothing(alice, alice_api):
    for body in ({"format": "xml"}, {"format": 1}, {"format": "json", "extra": 1}):
        r = alice_api.post("/v1/user/export", body, format="json")
        assert r.status_code == 400, body
    assert not DataExport.objects.filter(user=alice).exists()


def test_bob_gets_404_on_alices_export(alice, alice_api, bob_api):
    export_id = alice_api.post("/v1/user/export", {}, format="json").json()["export_id"]
    r = bob_api.get(f"/v1/user/export/{export_id}")
    assert r.status_code == 404 and r.json()["error"] == "export_not_found"
    assert bob_api.get("/v1/user/exports").json()["items"] == []
    assert bob_api.get("/v1/user/export/exp_nonsense").status_code == 404


def test_the_zip_is_kept_under_the_users_prefix_and_expires(alice):
    export = _run(alice)
    assert export.object_key.startswith(storage.user_prefix(alice.pk, "exports"))
    assert storage.read_bytes(export.object_key)[:2] == b"PK"
    DataExport.objects.filter(pk=export.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert services.exports_expire() == 1
    export.refresh_from_db()
    assert export.status == "expired" and services.export_download_url(export) is None
    with pytest.raises(storage.ObjectNotFound):
        storage.read_bytes(
            f"{storage.user_prefix(alice.pk, 'exports')}{export.public_id}.zip"
        )


def test_a_finished_export_is_not_run_twice(alice):
    export = _run(alice)
    assert services.export_run(export_id=str(export.pk)) is None


def test_the_cli_exports_at_once_and_prints_the_key_and_a_link(
    alice, alice_api, capsys
):
    alice_api.post(
        "/v1/user/export", {}, format="json"
    )  # in cooldown: not for operators
    call_command("user", "export", "alice@example.com", "--format", "csv")
    out = capsys.readouterr().out
    export = DataExport.objects.filter(user=alice, status="succeeded").get()
    assert export.object_key in out and "X-Amz-Signature" in out
    assert export.format == "csv"
    assert AuditEvent.objects.filter(
        user_id=alice.pk, action="privacy.export_request", actor_type="system"
    ).exists()


def test_a_user_without_data_exports_empty_parts(alice):
    z = _zip(_run(alice))
    assert json.loads(z.read("memories.json")) == []
    assert len(json.loads(z.read("profile.json"))) == 1


def test_an_export_of_an_account_being_erased_stores_nothing(alice):
    memory_for(alice, "alice likes green tea")
    export = services.export_request(ctx=ctx_for(alice), user=alice, fmt="json")
    type(alice).objects.filter(pk=alice.pk).update(is_active=False)  # erasure began
    assert services.export_run(export_id=str(export.pk)) is None
    assert storage.delete_prefix(storage.user_prefix(alice.pk, "exports")) == 0
