"""kimberly.storage against the real embedded S3 (SeaweedFS): objects, per-user
prefixes, signed URLs, `./cli storage check` and readiness."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command

from kimberly import storage
from kimberly.runtime import common

ROOT = Path(__file__).resolve().parent.parent


def _key(name: str = "note.txt", user: object = None) -> str:
    return storage.user_key(user or uuid.uuid4(), "attachments", name)


def _bucket_keys(prefix: str = "") -> list[str]:
    client = default_storage.connection.meta.client  # type: ignore[attr-defined]
    full = f"{default_storage.location}/{prefix}"  # type: ignore[attr-defined]
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=default_storage.bucket_name,  # type: ignore[attr-defined]
        Prefix=full,
    )
    return sorted(o["Key"][len(full) :] for p in pages for o in p.get("Contents", []))


def _get(url: str) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def test_user_keys_are_per_user_and_per_kind():
    user = uuid.uuid4()
    assert storage.user_key(user, "transcripts", "c1.jsonl") == (
        f"users/{user}/transcripts/c1.jsonl"
    )
    assert storage.user_prefix(user) == f"users/{user}/"
    for kind, name in [
        ("photos", "a"),
        ("exports", "a/b"),
        ("exports", ".."),
        ("imports", ""),
    ]:
        with pytest.raises(ValueError):
            storage.user_key(user, kind, name)


def test_put_read_open_delete_round_trip_with_the_content_type():
    key = _key("hello.md")
    storage.put_bytes(key, b"# hello\n", "text/markdown")
    assert storage.read_bytes(key) == b"# hello\n"
    with storage.open(key) as stream:
        assert stream.read(3) == b"# h"
        assert stream.read() == b"ello\n"
    head = default_storage.connection.meta.client.head_object(  # type: ignore[attr-defined]
        Bucket=default_storage.bucket_name,  # type: ignore[attr-defined]
        Key=f"{default_storage.location}/{key}",  # type: ignore[attr-defined]
    )
    assert head["ContentType"] == "text/markdown"
    # put_* write at exactly the key (a transcript is rewritten in place).
    storage.put_bytes(key, b"second", "text/markdown")
    assert storage.read_bytes(key) == b"second"
    assert _bucket_keys(key.rsplit("/", 1)[0]) == ["/hello.md"]
    storage.delete(key)
    with pytest.raises(storage.ObjectNotFound):
        storage.read_bytes(key)
    storage.delete(key)  # already gone: not an error


def test_put_file_streams_a_file_object(tmp_path):
    path = tmp_path / "big.bin"
    data = os.urandom(3 * 1024 * 1024)
    path.write_bytes(data)
    key = _key("big.bin")
    with open(path, "rb") as fh:
        storage.put_file(key, fh, "application/octet-stream")
    assert storage.read_bytes(key) == data


def test_a_signed_url_downloads_the_bytes_as_an_attachment():
    key = _key("report.txt")
    storage.put_bytes(key, b"the report", "text/plain")
    url = storage.signed_url(key, filename="Report 2026.txt")
    assert "X-Amz-Signature=" in url
    status, body, headers = _get(url)
    assert (status, body) == (200, b"the report")
    assert headers["Content-Disposition"].startswith("attachment;")
    assert "Report 2026.txt" in headers["Content-Disposition"]


def test_without_its_signature_or_after_it_expires_the_url_is_refused():
    key = _key("secret.txt")
    storage.put_bytes(key, b"private", "text/plain")
    url = storage.signed_url(key, filename="secret.txt")
    assert _get(url.split("?", 1)[0])[0] == 403  # never a public bucket
    tampered = url.replace("X-Amz-Expires=300", "X-Amz-Expires=30000")
    assert tampered != url and _get(tampered)[0] == 403
    short = storage.signed_url(key, filename="secret.txt", expires=1)
    assert _get(short)[0] == 200
    time.sleep(2.1)
    status, body, _ = _get(short)
    assert status == 403 and b"private" not in body


def test_delete_prefix_removes_only_that_users_objects(monkeypatch):
    alice, bob = uuid.uuid4(), uuid.uuid4()
    # bob's id starting with alice's: `users/<alice>` must not match him.
    for user, kind, name in [
        (alice, "attachments", "a.txt"),
        (alice, "attachments", "b.txt"),
        (alice, "transcripts", "c.jsonl"),
        (alice, "exports", "d.zip"),
        (alice, "imports", "e.json"),
        (bob, "attachments", "a.txt"),
    ]:
        storage.put_bytes(storage.user_key(user, kind, name), b"x", "text/plain")
    near = f"users/{alice}x/attachments/a.txt"
    storage.put_bytes(near, b"x", "text/plain")
    monkeypatch.setattr(storage, "_BATCH", 2)  # pages of 2: three pages, three deletes
    assert storage.delete_prefix(storage.user_prefix(alice)) == 5
    assert _bucket_keys(f"users/{alice}/") == []
    assert storage.read_bytes(storage.user_key(bob, "attachments", "a.txt")) == b"x"
    assert storage.read_bytes(near) == b"x"
    assert storage.delete_prefix(storage.user_prefix(alice)) == 0


@pytest.mark.parametrize(
    "prefix", ["", "/", "users/", "users", f"users/{uuid.uuid4()}"]
)
def test_delete_prefix_refuses_a_prefix_that_could_catch_other_users(prefix):
    with pytest.raises(ValueError):
        storage.delete_prefix(prefix)


def test_check_writes_reads_back_and_deletes_its_probe():
    before = _bucket_keys("health/")
    result = storage.check()
    assert result["ok"] is True
    assert result["bucket"] == default_storage.bucket_name  # type: ignore[attr-defined]
    assert _bucket_keys("health/") == before


def test_storage_check_command_prints_bucket_endpoint_and_ok(capsys):
    call_command("storage", "check")
    out = capsys.readouterr().out
    assert f"bucket:   {default_storage.bucket_name}" in out  # type: ignore[attr-defined]
    assert f"endpoint: {default_storage.endpoint_url}" in out  # type: ignore[attr-defined]
    assert "OK" in out


def test_storage_check_command_fails_fast_on_an_unreachable_bucket(dead_s3):
    started = time.monotonic()
    with pytest.raises(CommandError, match="unreachable"):
        call_command("storage", "check")
    assert time.monotonic() - started < 3


def test_cli_storage_check_exits_1_with_a_clear_message_when_s3_is_down():
    port = common.free_port()
    env = {
        **os.environ,
        "AWS_STORAGE_BUCKET_NAME": "kimberly",
        "AWS_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "DJANGO_SETTINGS_MODULE": "kimberly.settings.base",
    }
    run = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "storage", "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert "storage check failed: object storage is unreachable" in run.stderr
    assert f"127.0.0.1:{port}" in run.stderr


def test_without_a_bucket_every_operation_says_storage_is_not_configured(settings):
    options = settings.STORAGES["default"]["OPTIONS"]
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            **settings.STORAGES["default"],
            "OPTIONS": {**options, "bucket_name": None},
        },
    }
    with pytest.raises(storage.StorageNotConfigured, match="AWS_STORAGE_BUCKET_NAME"):
        storage.put_bytes(_key(), b"x", "text/plain")
    with pytest.raises(CommandError, match="no object storage bucket"):
        call_command("storage", "check")


@pytest.mark.django_db
def test_readiness_reports_storage_up_without_writing(api):
    before = _bucket_keys()
    for _ in range(3):
        check = api.get("/v1/health/ready").json()["checks"]["storage"]
        assert check["ok"] is True
    assert check["ms"] < 500
    assert _bucket_keys() == before


@pytest.mark.django_db
def test_readiness_reports_a_dead_s3_down_within_the_deadline(api, dead_s3):
    started = time.monotonic()
    body = api.get("/v1/health/ready").json()
    assert time.monotonic() - started < 2.5
    assert body["status"] == "degraded"
    assert body["checks"]["storage"] == {
        **body["checks"]["storage"],
        "ok": False,
        "error": "StorageUnavailable",
    }
