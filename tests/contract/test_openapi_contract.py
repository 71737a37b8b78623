"""The OpenAPI schema tells the truth: schemathesis fuzzes every operation of a
live server against it and fails on any mismatch or any 5xx.

Runs as its own step of `make test` (`pytest -m contract`): a minute or two of
real HTTP against the test database, with the settings in schemathesis.toml.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from knox.models import AuthToken

from memory import embeddings
from memory.tests.factories import memory_for

pytestmark = [pytest.mark.contract, pytest.mark.django_db(transaction=True)]

CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def test_every_operation_answers_as_the_openapi_schema_says(
    live_server, alice, tmp_path
):
    embeddings.embed_texts(["warm up"])  # load the model now, not in a timed request
    memory_for(alice, "The contract run starts with one memory")
    _, token = AuthToken.objects.create(user=alice)
    run = subprocess.run(
        [
            str(SCHEMATHESIS),
            "--config-file",
            str(CONFIG),
            "run",
            f"{live_server.url}/v1/schema",
            "--workers",
            "1",
            "--no-color",
            "--header",
            f"Authorization: Bearer {token}",
            # e.g. "--include-path-regex /goals --phases stateful" while debugging
            *shlex.split(os.environ.get("CONTRACT_EXTRA_ARGS", "")),
        ],
        cwd=tmp_path,  # schemathesis keeps a cache directory in its cwd
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
