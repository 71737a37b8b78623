"""The metadata shape is defined once (memory/metadata.py) and agrees everywhere."""

from __future__ import annotations

import json

import pytest
from django.db import connection

from memory.metadata import DEFAULT_METADATA, metadata_of, metadata_sql
from memory.tests.factories import memory_for

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "metadata",
    [
        {},
        {"tags": ["family", "dates"], "channels": ["sms"], "sensitive": True},
        {"user_feedback": "rating:4", "scope": "shared", "source": "import"},
    ],
)
def test_the_sql_snapshot_of_metadata_equals_what_the_api_shows(alice, metadata):
    item = memory_for(alice, "Anna's birthday is March 3rd", metadata=metadata)
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT {metadata_sql('m')} FROM memory_memoryitem m WHERE m.id = %s",
            [item.pk],
        )
        snapshot = json.loads(cur.fetchone()[0])  # Django reads jsonb as text
    assert snapshot == {**metadata_of(item), "version": item.version}
    assert set(snapshot) == {*DEFAULT_METADATA, "version"}
