"""Shared fixtures: API clients, personas (alice owns, bob must see nothing of hers),
and a stand-in OpenAI-compatible model server."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django_redis import get_redis_connection
from rest_framework.test import APIClient

from kimberly import runtime
from kimberly.runtime import common
from tests.standins.openai_server import StandinServer
from users.tests.factories import UserFactory


@pytest.fixture(autouse=True, scope="session")
def _test_bucket() -> Iterator[None]:
    """The test bucket exists (created on the first run); at the end, the objects
    this run wrote (under its own prefix, settings.TEST_STORAGE_LOCATION) are gone."""
    from django.core.files.storage import default_storage

    from kimberly.runtime.seaweed import ensure_bucket

    bucket = getattr(default_storage, "bucket_name", None)
    if not bucket:  # no S3 configured: the storage tests fail with that error
        yield
        return
    client = default_storage.connection.meta.client  # type: ignore[attr-defined]
    ensure_bucket(client, bucket)
    yield
    prefix = f"{settings.TEST_STORAGE_LOCATION}/"
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix
    ):
        if objects := [{"Key": o["Key"]} for o in page.get("Contents", [])]:
            client.delete_objects(Bucket=bucket, Delete={"Objects": objects})


@pytest.fixture(autouse=True)
def _clean_redis() -> Iterator[None]:
    """Each test starts with empty cache and rate-limit state (a test-only Redis db)."""
    location = str(settings.CACHES["default"]["LOCATION"])
    assert location.endswith(f"/{settings.REDIS_CACHE_DB}"), "never flush a live cache"
    get_redis_connection("default").flushdb()
    yield


@pytest.fixture(autouse=True)
def _rls_maintenance(request: pytest.FixtureRequest) -> Iterator[None]:
    """Test data is made through the ORM in fixtures: a test's own connection
    runs under the maintenance scope. Requests (RlsMiddleware) and tasks
    (rls.task_scope) inside the test start from no scope and switch to their
    own user, as in production; tests/test_rls.py proves the isolation itself."""
    uses_db = request.node.get_closest_marker("django_db") or any(
        f in request.fixturenames for f in ("db", "transactional_db")
    )
    if not uses_db:
        yield
        return
    request.getfixturevalue("_django_db_helper")
    from django.db.backends.signals import connection_created

    from kimberly import rls

    test_thread = threading.get_ident()

    def reopened(connection: Any, **_: Any) -> None:
        # Something closed the test's connection (a test Celery worker's set-up
        # closes the caller's): the reopened one gets the test's scope back.
        # Other threads (workers, concurrent writers) start with no scope.
        if threading.get_ident() == test_thread:
            with connection.cursor() as cur:
                cur.execute(
                    "SELECT set_config(%s, %s, false)", [rls.SCOPE_GUC, rls.MAINTENANCE]
                )

    connection_created.connect(reopened, dispatch_uid="rls-test-scope")
    try:
        with rls.maintenance("tests: fixtures write through the ORM"):
            yield
    finally:
        connection_created.disconnect(dispatch_uid="rls-test-scope")


@pytest.fixture
def fresh_keys() -> Iterator[None]:
    """No KMS provider nor data key cached from another test, nor left for the
    next (users/keys.py caches unwrapped keys per process)."""
    from kimberly import kms
    from users import keys

    kms.providers.cache_clear()
    keys.cache_clear()
    yield
    keys.cache_clear()


@pytest.fixture
def api() -> APIClient:
    return APIClient()


def _client_for(user: Any) -> APIClient:
    from knox.models import AuthToken

    _, token = AuthToken.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def alice(db: None) -> Any:
    return UserFactory(email="alice@example.com")


@pytest.fixture
def bob(db: None) -> Any:
    return UserFactory(email="bob@example.com")


@pytest.fixture
def alice_api(alice: Any) -> APIClient:
    return _client_for(alice)


@pytest.fixture
def bob_api(bob: Any) -> APIClient:
    return _client_for(bob)


@pytest.fixture
def llm_server() -> Iterator[StandinServer]:
    """A stand-in OpenAI-compatible server on a loopback port: `.base_url` (ends
    in /v1), `.script(Behaviour(...), ..., then=...)`, `.requests`."""
    server = StandinServer().start()
    yield server
    server.stop()


@pytest.fixture
def with_llm(llm_server: StandinServer, settings: Any) -> StandinServer:
    """Settings pointing the model runner at `llm_server`, with timeouts and
    backoff small enough for tests (override further with `settings`)."""
    settings.LLM_BASE_URL = llm_server.base_url
    settings.LLM_MODEL = "standin-model"
    settings.LLM_API_KEY = None
    settings.LLM_TIMEOUT_SECONDS = 2.0
    settings.LLM_RETRIES = 2
    settings.LLM_RETRY_BACKOFF_SECONDS = 0.01
    return llm_server


@pytest.fixture
def dead_s3(settings):
    """The default storage pointed at a closed port on loopback."""
    port = common.free_port()  # nothing listens there once the probe socket closes
    options = settings.STORAGES["default"]["OPTIONS"]
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            **settings.STORAGES["default"],
            "OPTIONS": {**options, "endpoint_url": f"http://127.0.0.1:{port}"},
        },
    }
    return port


_S3_ENV = (
    "AWS_STORAGE_BUCKET_NAME",
    "AWS_S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
)


@pytest.fixture
def scratch_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point the runtime at a scratch ./var so the suite's own servers are untouched.

    The S3 counts as external here (a bucket is named): the lifecycle is the same
    for every service; `scratch_s3` starts the embedded S3 alone.
    """
    var = tmp_path / "var"
    monkeypatch.setattr(common, "VAR_DIR", var)
    for name in ("DATABASE_URL", "REDIS_URL", *_S3_ENV):
        monkeypatch.delenv(name, raising=False)  # and restored after the test
    monkeypatch.setenv("AWS_STORAGE_BUCKET_NAME", "external-bucket")
    yield var
    runtime.stop_seaweed()
    runtime.stop_valkey()
    runtime.stop_postgres()


@pytest.fixture
def scratch_s3(scratch_runtime: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Only the embedded S3 starts (PostgreSQL and Valkey count as external)."""
    monkeypatch.delenv("AWS_STORAGE_BUCKET_NAME")
    monkeypatch.setenv("DATABASE_URL", "postgresql://unused")
    monkeypatch.setenv("REDIS_URL", "redis://unused")
    return scratch_runtime


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The run fails if any log line it wrote shows content the tests stored or a
    secret they used (tests/log_canary.py): the records of this process and of
    the workers it started (settings.TEST_LOG_FILE), and the output of the
    processes tests started (worker.log, beat.log, web.log: the *.log files of
    the tests' temporary directories)."""
    from tests.log_canary import find_leaks

    log_file = Path(settings.TEST_LOG_FILE)
    for handler in logging.getLogger().handlers:
        handler.flush()
    paths = [log_file]
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is not None and factory._basetemp is not None:
        paths += sorted(factory.getbasetemp().glob("*/*.log"))
    leaks = find_leaks(paths)
    if not leaks:
        log_file.unlink(missing_ok=True)  # kept only to show a leak
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"{len(leaks)} log line(s) show stored content or a secret:", *leaks]
    if reporter is not None:
        reporter.write_sep("=", "log hygiene", red=True)
        for line in lines[:50]:
            reporter.write_line(line)
    else:
        print("\n".join(lines[:50]))
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
