"""What an agent keeps of a sensitive memory it read: its id, never its text.
The researcher's findings, digest, trace and saved digest, and the scheduler's
events, name a sensitive source by id; a digest citing one is kept sealed."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from agents.tests.conftest import wait_status
from memory.constants import Tier
from memory.models import MemoryItem
from memory.tests.factories import grant, memory_for
from users import consents
from users.models import Consent

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "My quokka vault word is tangerine"
TABLES = ("agents_agenttask", "agents_event", "memory_memoryitem")


def _run(api: Any, **body: Any) -> dict[str, Any]:
    r = api.post("/v1/agents/tasks", body, format="json")
    assert r.status_code == 202, r.content
    task_id = r.json()["task_id"]
    wait_status(task_id, "succeeded", "failed", "previewed", "timed_out")
    done: dict[str, Any] = api.get(f"/v1/agents/tasks/{task_id}").json()
    return done


def _rows_with(word: str) -> dict[str, int]:
    """Rows of the agents' and memories' tables whose text (every column, the
    tsvector's lexemes included) holds `word`."""
    found = {}
    with connection.cursor() as cur:
        for table in TABLES:
            cur.execute(
                f"SELECT count(*) FROM {table} t WHERE t::text ILIKE %s",  # nosec B608
                [f"%{word}%"],
            )
            found[table] = cur.fetchone()[0]
    return {t: n for t, n in found.items() if n}


def _research_and_save(api: Any) -> dict[str, Any]:
    done = _run(
        api, agent="researcher", task="what is my vault word", params={"save": True}
    )
    assert done["status"] == "succeeded", done
    return done


def _sensitive_memory(user: Any, text: str = SECRET) -> MemoryItem:
    grant(user, consents.Purpose.AGENT_ACCESS)
    return memory_for(user, text, tier=Tier.SHORT_TERM, metadata={"sensitive": True})


def test_research_cites_a_sensitive_memory_by_id_and_saves_its_digest_sealed(
    alice, alice_api, agents_worker
):
    item = _sensitive_memory(alice)
    done = _research_and_save(alice_api)
    findings = done["result"]["findings"]
    assert findings and {f["memory_id"] for f in findings} == {item.public_id}
    assert {f["excerpt"] for f in findings} == {f"(sensitive memory) {item.public_id}"}
    assert item.public_id in done["result"]["digest"]
    # Neither the task (result, trace, plan) nor any memory row, nor the
    # full-text index of one, holds a word of it.
    assert _rows_with("tangerin") == {}
    assert _rows_with("quokka") == {}
    saved = MemoryItem.objects.get(user=alice, source="agent")
    assert saved.sensitive and saved.sealed is not None
    assert item.public_id in saved.content  # opened: the digest, citing it


def test_research_leaves_out_the_save_of_a_sensitive_source_without_consent(
    alice, alice_api, agents_worker
):
    item = _sensitive_memory(alice)
    # The sensitive_memory consent lapsed (its hook not run yet): the item is
    # still found, but no sensitive memory may be written for alice.
    Consent.objects.filter(user=alice, purpose="sensitive_memory").update(
        withdrawn_at=timezone.now()
    )
    done = _research_and_save(alice_api)
    assert {f["memory_id"] for f in done["result"]["findings"]} == {item.public_id}
    plan = next(s for s in done["trace"] if s["step"] == "plan")
    assert plan["detail"] == {"skipped": "sensitive_source"} and plan["writes"] == []
    assert not MemoryItem.objects.filter(user=alice, source="agent").exists()


def test_research_saves_an_ordinary_digest_as_an_ordinary_memory(
    alice, alice_api, agents_worker
):
    memory_for(alice, "Alice keeps her lapsang tea in the blue tin")
    done = _run(
        alice_api, agent="researcher", task="where is my lapsang", params={"save": True}
    )
    assert done["status"] == "succeeded", done
    assert "lapsang" in done["result"]["findings"][0]["excerpt"]
    saved = MemoryItem.objects.get(user=alice, source="agent")
    assert not saved.sensitive and saved.sealed is None and "lapsang" in saved.content


def test_the_scheduler_titles_an_event_of_a_sensitive_memory_by_its_id(
    alice, alice_api, agents_worker
):
    item = _sensitive_memory(alice, "Quokka vault opening on 14 June 2027 at 7:30")
    done = _run(
        alice_api,
        agent="scheduler",
        task="when is the vault opening",
        params={"source": "memories"},
    )
    assert done["status"] == "succeeded", done
    (event,) = done["result"]["events"]
    assert event["memory_id"] == item.public_id
    assert event["title"] == f"(sensitive memory) {item.public_id}"
    assert event["starts_at"].startswith("2027-06-14")
    assert _rows_with("quokka") == {}
    listed = alice_api.get("/v1/agents/events").json()["items"]
    assert [e["title"] for e in listed] == [event["title"]]
