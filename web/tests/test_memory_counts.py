"""The memory page counts the user's items once, for the quota bars and the
list's size together; the count it shows is the list's real size."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from memory.models import MemoryItem
from memory.tests.factories import memory_for

pytestmark = pytest.mark.django_db


def _shown(page: str) -> int:
    found = re.search(r'<p class="note">(\d+) memor', page)
    assert found, "no count shown"
    return int(found.group(1))


@pytest.fixture
def alice_items(alice):
    for n in range(3):
        memory_for(alice, f"long note {n}", metadata={"tags": ["work"]})
    memory_for(alice, "short note", tier="short-term")
    memory_for(alice, "old note", archived=True)
    hidden = memory_for(alice, "hidden sensitive note", metadata={"sensitive": True})
    MemoryItem.objects.filter(pk=hidden.pk).update(consent=False)
    return alice


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", 4),
        ("?tier=long-term", 3),
        ("?tier=short-term", 1),
        ("?status=archived", 1),
        ("?status=all", 5),
        ("?status=all&tier=long-term", 4),
        ("?tags=work", 3),
    ],
)
def test_the_count_shown_is_the_lists_size(alice_items, alice_web, query, expected):
    page = alice_web.get(f"/memory{query}").content.decode()
    assert _shown(page) == expected
    fragment = alice_web.get(f"/memory/list{query}").content.decode()
    assert _shown(fragment) == expected


def test_the_page_counts_the_users_items_once(alice_items, alice_web):
    with CaptureQueriesContext(connection) as queries:
        alice_web.get("/memory")
    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]
    assert len(counts) == 1, counts


def test_the_quota_bars_count_what_the_user_can_see(alice_items, alice_web):
    page = alice_web.get("/memory").content.decode()
    # long-term: 3 visible active (the hidden sensitive one is not counted), 1 archived
    assert "3 active, 1 archived" in page


def test_the_dashboard_and_the_memory_page_show_the_same_counts(alice_items, alice_web):
    pattern = re.compile(r"(\d+) active, (\d+) archived")
    dashboard = pattern.findall(alice_web.get("/").content.decode())
    memory = pattern.findall(alice_web.get("/memory").content.decode())
    assert dashboard and dashboard == memory
