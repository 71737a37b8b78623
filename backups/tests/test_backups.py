"""Backups end to end, against the embedded PostgreSQL and S3: create, list,
verify (and its failures), restore, the gauges.

Every test here is transactional (`transaction=True`): pg_dump reads the
database from its own connection, so the data must be committed, and a restore
replaces tables, which only works outside the test's transaction. The "live"
database a restore replaces is the test database (connection settings say
which: test_kimberly_<...>), never the development one; it is restored to the
state of a backup this test made, and the flush at the end of every
transactional test empties it for the next one as usual.
"""

from __future__ import annotations

import hashlib
import io
import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from prometheus_client.parser import text_string_to_metric_families

from backups.metrics import BackupCollector
from backups.models import BackupRun
from backups.services import objects, pg
from kimberly import storage
from memory.models import MemoryItem
from memory.tests.factories import memory_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _own_prefix(settings) -> None:
    """Each test sees only its own backups (the bucket is shared by the run)."""
    settings.BACKUP_PREFIX = f"backups-{secrets.token_hex(4)}"


def _cli(*args: str) -> str:
    out = io.StringIO()
    call_command("backup", *args, stdout=out)
    return out.getvalue()


def _scratch_databases() -> list[str]:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s",
            [pg.SCRATCH_PREFIX + "%"],
        )
        return [r[0] for r in cur.fetchall()]


def _copy_as(key: str, run_id: int, *, data: bytes, manifest: dict) -> str:
    """Another backup in the bucket: `data` as its dump, `manifest` beside it."""
    other = objects.dump_key(objects.timestamp(key), run_id)
    storage.put_bytes(other, data, "application/octet-stream")
    objects.write_manifest(other, manifest)
    return other


GAUGES = (
    "kimberly_backup_last_success_timestamp_seconds",
    "kimberly_backup_last_failure_timestamp_seconds",
    "kimberly_backup_last_size_bytes",
    "kimberly_backup_last_verify_success_timestamp_seconds",
)


def _gauges() -> dict[str, float]:
    return {m.name: m.samples[0].value for m in BackupCollector().collect()}


def test_create_list_verify_and_a_tampered_backup_fails(alice):
    memory_for(alice, "alice keeps her keys in the blue bowl")
    memory_for(alice, "alice's sister is called Maud")
    assert _gauges()["kimberly_backup_last_success_timestamp_seconds"] == 0
    old = f"{objects.prefix()}20200105T010700Z-1.dump"  # outside a 1-daily policy
    storage.put_bytes(old, b"old", "application/octet-stream")

    with override_settings(
        BACKUP_KEEP_DAILY=1, BACKUP_KEEP_WEEKLY=0, BACKUP_KEEP_MONTHLY=0
    ):
        out = _cli("create")
    run = BackupRun.objects.get(kind="create")
    assert run.status == "succeeded" and run.key in out
    assert f"pruned {old}" in out and old not in storage.list_prefix(objects.prefix())

    data = storage.read_bytes(run.key)
    assert data.startswith(b"PGDMP")  # pg_dump's custom format
    assert hashlib.sha256(data).hexdigest() == run.sha256
    assert len(data) == run.size_bytes
    manifest = objects.read_manifest(run.key)
    assert manifest["sha256"] == run.sha256
    assert manifest["database"] == connection.settings_dict["NAME"]
    assert manifest["server_version"].startswith("18")
    assert manifest["tables"]["memory_memoryitem"] == 2  # RLS did not hide them
    assert manifest["tables"]["audit_auditevent"] >= 2
    assert manifest["migration_heads"]["backups"] == "0001_initial"
    raw = json.loads(storage.read_bytes(objects.manifest_key(run.key)))
    assert (
        objects.manifest_key(run.key)
        == run.key.removesuffix(".dump") + ".manifest.json"
    )
    assert raw["key"] == run.key and raw["created_at"].endswith("+00:00")

    events_in_backup = manifest["tables"]["audit_auditevent"]
    memory_for(alice, "written after the backup")  # more audit events, live only

    listed = _cli("list")
    assert (
        run.key in listed
        and str(run.size_bytes) in listed
        and run.sha256[:16] in listed
    )

    verified = _cli("verify")
    assert f"backup {run.key} verified" in verified
    for check in ("checksum", "restore", "row counts", "audit chains", "migrations"):
        assert check in verified
    assert "FAILED" not in verified
    verify_run = BackupRun.objects.get(kind="verify")
    audit = next(
        c for c in verify_run.details["checks"] if c["check"] == "audit chains"
    )
    assert audit["detail"].startswith(f"{events_in_backup} events")  # the copy's
    assert verify_run.status == "succeeded" and verify_run.key == run.key
    assert f"{verify_run.finished_at:%Y-%m-%d %H:%M}" in _cli("list")  # verified at

    # one byte changed in the dump: its checksum no longer matches
    flipped = bytes([data[0] ^ 1]) + data[1:]
    bad_sum = _copy_as(run.key, 9001, data=flipped, manifest=manifest)
    with pytest.raises(CommandError, match="FAILED verification: failed: checksum"):
        _cli("verify", bad_sum)

    # the same dump, but the manifest counts one memory more than it holds
    wrong = {**manifest, "tables": {**manifest["tables"], "memory_memoryitem": 3}}
    bad_count = _copy_as(run.key, 9002, data=data, manifest=wrong)
    with pytest.raises(CommandError, match="failed: row counts"):
        _cli("verify", bad_count)
    failed = BackupRun.objects.filter(kind="verify", status="failed")
    assert failed.count() == 2
    counts = next(
        c
        for c in failed.get(key=bad_count).details["checks"]
        if c["check"] == "row counts"
    )
    assert "memory_memoryitem: 2 restored, 3 in manifest" in counts["detail"]
    assert _scratch_databases() == []  # dropped after a failed check too

    gauges = _gauges()
    assert run.finished_at and verify_run.finished_at
    assert (
        gauges["kimberly_backup_last_success_timestamp_seconds"]
        == run.finished_at.timestamp()
    )
    assert gauges["kimberly_backup_last_failure_timestamp_seconds"] == 0
    assert gauges["kimberly_backup_last_size_bytes"] == run.size_bytes
    assert (
        gauges["kimberly_backup_last_verify_success_timestamp_seconds"]
        == verify_run.finished_at.timestamp()
    )


def test_restore_needs_yes_then_brings_back_a_deleted_row(alice):
    kept = memory_for(alice, "the spare key is under the third flowerpot")
    lost = memory_for(alice, "the wifi password is on the fridge")
    key = _cli("create").split()[1].rstrip(":")
    MemoryItem.objects.filter(pk=lost.pk).delete()
    runs_before = BackupRun.objects.count()
    dumps_before = objects.stored_dumps()

    with pytest.raises(CommandError, match=r"backup_restore_not_confirmed: .*--yes"):
        _cli("restore", key)
    assert list(MemoryItem.objects.values_list("pk", flat=True)) == [kept.pk]
    assert BackupRun.objects.count() == runs_before
    assert objects.stored_dumps() == dumps_before

    out = _cli("restore", key, "--yes")
    assert f"restored {key}" in out
    assert set(MemoryItem.objects.values_list("pk", flat=True)) == {kept.pk, lost.pk}
    assert MemoryItem.objects.get(pk=lost.pk).content == lost.content

    restore_run = BackupRun.objects.get(kind="restore")
    assert restore_run.status == "succeeded"
    # the backup taken just before holds the database as it was (one memory)
    safety = restore_run.details["safety_backup"]
    assert safety in objects.stored_dumps() and safety != key
    assert objects.read_manifest(safety)["tables"]["memory_memoryitem"] == 1
    # the record of backups is not rolled back: every run is still there
    assert (
        BackupRun.objects.count() == runs_before + 2
    )  # the safety create, the restore
    assert "migrations" in out and "FAILED" not in out


def _scraped(api: Any) -> dict[str, float]:
    resp = api.get("/metrics")
    assert resp.status_code == 200
    return {
        s.name: s.value
        for family in text_string_to_metric_families(resp.content.decode())
        for s in family.samples
        if s.name.startswith("kimberly_backup_")
    }


def test_a_failed_dump_is_recorded_and_leaves_no_object(alice, api, tmp_path: Path):
    assert _scraped(api) == dict.fromkeys(GAUGES, 0.0)
    fake = tmp_path / "pg_dump"
    fake.write_text("#!/bin/sh\necho 'pg_dump: error: no such luck' >&2\nexit 1\n")
    fake.chmod(0o755)
    with (
        override_settings(BACKUP_PG_BIN_DIR=str(tmp_path)),
        pytest.raises(
            CommandError,
            match="backup_failed: pg_dump exited with 1: pg_dump: error: no such luck",
        ),
    ):
        _cli("create")
    run = BackupRun.objects.get()
    assert run.status == "failed" and "no such luck" in run.error
    assert run.finished_at
    assert run.key and run.key not in storage.list_prefix(objects.prefix())
    assert _scraped(api) == {
        **dict.fromkeys(GAUGES, 0.0),
        "kimberly_backup_last_failure_timestamp_seconds": run.finished_at.timestamp(),
    }


def test_unknown_and_malformed_keys_are_refused(db):
    with pytest.raises(CommandError, match="backup_not_found"):
        _cli("verify")  # no backup at all
    with pytest.raises(CommandError, match="backup_key_invalid"):
        _cli("verify", "users/1/exports/x.zip")
    with pytest.raises(CommandError, match="backup_not_found"):
        _cli("restore", f"{objects.prefix()}20990101T000000Z-1.dump", "--yes")


def test_a_backup_with_a_broken_audit_chain_fails_verify(alice):
    memory_for(alice, "alice is allergic to hazelnuts")
    # an edit behind the audit log's back (its trigger refuses UPDATE, so the
    # table's owner turns it off for this one statement)
    with connection.cursor() as cur:
        cur.execute(
            "ALTER TABLE audit_auditevent DISABLE TRIGGER audit_auditevent_append_only"
        )
        cur.execute(
            "UPDATE audit_auditevent SET action = 'memory.nothing' "
            "WHERE id = (SELECT min(id) FROM audit_auditevent WHERE user_id = %s)",
            [alice.pk],
        )
        cur.execute(
            "ALTER TABLE audit_auditevent ENABLE TRIGGER audit_auditevent_append_only"
        )
    key = _cli("create").split()[1].rstrip(":")
    with pytest.raises(CommandError, match="failed: audit chains"):
        _cli("verify", key)
    checks = BackupRun.objects.get(kind="verify").details["checks"]
    assert [c["check"] for c in checks if not c["ok"]] == ["audit chains"]
    audit = next(c for c in checks if c["check"] == "audit chains")
    assert "hash does not match" in audit["detail"]
