"""A body longer than its route may take is refused before anything reads it
(the CSRF check reads a whole form body, for anyone, signed in or not)."""

from __future__ import annotations

import io
import json

import pytest
from django.test import Client, RequestFactory, override_settings

from kimberly.middleware import ENVELOPE_BYTES, BodyLimitMiddleware


class _Unreadable(io.RawIOBase):
    def read(self, *args):
        raise AssertionError("the body was read")


def _post(path: str, length: int):
    request = RequestFactory().post(path, data=b"", content_type="multipart/form-data")
    request.META["CONTENT_LENGTH"] = str(length)
    request.META["wsgi.input"] = _Unreadable()
    return BodyLimitMiddleware(lambda r: pytest.fail("reached the view"))(request)


@override_settings(IMPORT_MAX_BYTES=1000, DATA_UPLOAD_MAX_MEMORY_SIZE=100)
def test_an_upload_over_its_routes_limit_is_413_unread():
    r = _post("/memory/imports/upload", 1000 + ENVELOPE_BYTES + 1)
    assert r.status_code == 413
    body = json.loads(r.content)
    assert body["error"] == "payload_too_large"
    assert body["details"]["max_bytes"] == 1000 + ENVELOPE_BYTES
    # any other route: the JSON/form bound
    assert _post("/login", 100 + ENVELOPE_BYTES + 1).status_code == 413


@pytest.mark.django_db
@override_settings(IMPORT_MAX_BYTES=1000)
def test_an_anonymous_big_upload_is_refused_before_the_csrf_check_reads_it():
    client = Client(enforce_csrf_checks=True)
    client.get("/login")  # a csrftoken cookie, as anyone can get
    big = b"x" * (1000 + ENVELOPE_BYTES + 10)
    r = client.post(
        "/memory/imports/upload", data=big, content_type="application/octet-stream"
    )
    assert r.status_code == 413
