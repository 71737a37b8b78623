"""The scheduler and the researcher at work on a real agents worker: events from
text, memories and .ics files; research with citations; every memory read an
agent makes is in the audit log and in the memory's accesses."""

from __future__ import annotations

import icalendar
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from agents.models import Event
from agents.tests.conftest import wait_status
from audit.models import AuditEvent
from memory.constants import Tier
from memory.models import MemoryItem
from memory.retrieval.provenance import flush_retrieval_log
from memory.tests.factories import memory_for

pytestmark = pytest.mark.django_db(transaction=True)

ICS = b"""BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Test//EN
BEGIN:VEVENT
UID:dentist-1@example.org
SUMMARY:Dentist
DTSTART;TZID=Europe/Berlin:20270303T100000
DTEND;TZID=Europe/Berlin:20270303T110000
END:VEVENT
END:VCALENDAR
"""


def _run(api, **body):
    r = api.post("/v1/agents/tasks", body, format="json")
    assert r.status_code == 202, r.content
    task_id = r.json()["task_id"]
    wait_status(task_id, "succeeded", "failed", "previewed", "timed_out")
    return api.get(f"/v1/agents/tasks/{task_id}").json()


def test_the_scheduler_keeps_events_from_a_text_and_exports_them(
    alice_api, agents_worker
):
    done = _run(
        alice_api,
        agent="scheduler",
        task="Dentist on March 3 2027 at 10am. Anna's birthday is on 12 May 2027.",
    )
    assert done["status"] == "succeeded", done
    titles = sorted(e["title"] for e in done["result"]["events"])
    assert titles == ["Anna's birthday", "Dentist"]
    listed = alice_api.get("/v1/agents/events").json()["items"]
    assert [e["title"] for e in listed] == ["Dentist", "Anna's birthday"]
    r = alice_api.get("/v1/agents/calendar.ics")
    assert r.status_code == 200 and r["Content-Type"] == "text/calendar"
    cal = icalendar.Calendar.from_ical(r.content)
    assert sorted(str(e["SUMMARY"]) for e in cal.walk("VEVENT")) == titles
    # The same text again keeps no second copy of each event.
    _run(alice_api, agent="scheduler", task="Dentist on March 3 2027 at 10am.")
    assert Event.objects.count() == 2


def test_the_scheduler_finds_dates_in_memories_and_imports_ics(
    alice, alice_api, agents_worker
):
    mem = memory_for(
        alice, "Flight to Lisbon on 14 June 2027 at 7:30", tier=Tier.LONG_TERM
    )
    done = _run(alice_api, task="When is my flight to Lisbon?")
    assert done["agent"] == "scheduler" and done["status"] == "succeeded", done
    (event,) = done["result"]["events"]
    assert event["source"] == "memory" and event["memory_id"] == mem.public_id
    search = next(s for s in done["trace"] if s["step"] == "find_in_memories")
    assert mem.public_id in [r["memory_id"] for r in search["reads"]]

    upload = SimpleUploadedFile("cal.ics", ICS, content_type="text/calendar")
    r = alice_api.post("/v1/agents/calendar.ics", {"file": upload}, format="multipart")
    assert r.status_code == 202, r.content
    wait_status(r.json()["task_id"], "succeeded")
    imported = Event.objects.get(uid="dentist-1@example.org")
    assert imported.source == "ics" and imported.starts_at.hour == 9  # 10:00 CET
    bad = SimpleUploadedFile("x.ics", b"not a calendar", content_type="text/calendar")
    r = alice_api.post("/v1/agents/calendar.ics", {"file": bad}, format="multipart")
    assert r.status_code == 400 and r.json()["error"] == "invalid_ics"


def test_research_cites_memories_and_documents_and_every_read_is_audited(
    alice, alice_api, agents_worker
):
    tea = memory_for(
        alice, "My favourite tea is a smoky lapsang souchong", tier=Tier.PERMANENT
    )
    memory_for(alice, "The car needs new tyres before winter", tier=Tier.LONG_TERM)
    text = "Intro line about nothing.\n\n" + "The greenhouse holds twelve orchids. " * 3
    upload = SimpleUploadedFile("garden.txt", text.encode(), content_type="text/plain")
    att = alice_api.post("/v1/attachments", {"file": upload}, format="multipart")
    assert att.status_code == 201, att.content

    done = _run(
        alice_api,
        task="Research what tea I like and how many orchids are in the greenhouse",
    )
    assert done["agent"] == "researcher" and done["status"] == "succeeded", done
    result = done["result"]
    assert result["sub_queries"][1:] == [
        "what tea I like",
        "how many orchids are in the greenhouse",
    ]
    cited = {f["memory_id"]: f for f in result["findings"]}
    assert tea.public_id in cited
    doc = next(f for f in result["findings"] if f["attachment_id"])
    assert doc["attachment_id"] == att.json()["id"] and doc["offset"] == 0
    assert "[1]" in result["digest"] and result["answered_by"] == "digest"

    reads = AuditEvent.objects.filter(action="memory.read", target_id=tea.public_id)
    assert reads.exists()
    first = reads.first()
    assert first is not None
    details = first.details
    assert details["reader"] == "agent" and details["agent"] == "researcher"
    assert details["ref"] == done["task_id"]
    flush_retrieval_log()
    accesses = alice_api.get(f"/v1/memory/{tea.public_id}/accesses")
    assert {"kind": "agent", "ref": done["task_id"]}.items() <= next(
        a for a in accesses.json()["items"] if a["kind"] == "agent"
    ).items()


def test_a_research_preview_plans_the_save_and_commit_makes_it(
    alice, alice_api, agents_worker
):
    memory_for(
        alice, "My favourite tea is a smoky lapsang souchong", tier=Tier.PERMANENT
    )
    before = MemoryItem.objects.filter(user=alice).count()
    done = _run(
        alice_api,
        agent="researcher",
        task="what tea do I like",
        params={"save": True},
        preview=True,
    )
    assert done["status"] == "previewed"
    assert [w["kind"] for w in done["planned_writes"]] == ["memory.write"]
    assert MemoryItem.objects.filter(user=alice).count() == before
    r = alice_api.post(f"/v1/agents/tasks/{done['task_id']}/commit")
    assert r.status_code == 202
    wait_status(done["task_id"], "succeeded")
    saved = MemoryItem.objects.get(user=alice, tier=Tier.SHORT_TERM)
    assert saved.source == "agent" and saved.created_by == "agent"
    assert "lapsang" in saved.content
    create = AuditEvent.objects.get(action="memory.create", target_id=saved.public_id)
    assert create.actor_id == f"researcher:{done['task_id']}"


def test_a_preview_whose_memory_changed_cannot_be_committed_and_is_withheld(
    alice, alice_api, agents_worker
):
    from memory.models import MemoryItem as Item

    pin = memory_for(alice, "The Lisbon bank PIN is 4711", tier=Tier.PERMANENT)
    done = _run(
        alice_api,
        agent="researcher",
        task="what is the Lisbon bank PIN",
        params={"save": True},
        preview=True,
    )
    assert done["status"] == "previewed" and done["stale_memories"] == []
    assert "4711" in done["result"]["digest"]
    assert alice_api.delete(f"/v1/memory/{pin.public_id}").status_code == 204
    shown = alice_api.get(f"/v1/agents/tasks/{done['task_id']}").json()
    assert shown["stale_memories"] == [pin.public_id]
    assert shown["result"]["withheld"] is True
    assert "4711" not in str(shown["result"]) + str(shown["planned_writes"])
    before = Item.objects.filter(user=alice).count()
    r = alice_api.post(f"/v1/agents/tasks/{done['task_id']}/commit")
    assert r.status_code == 409 and r.json()["error"] == "plan_stale"
    assert r.json()["details"]["memories"] == [pin.public_id]
    assert Item.objects.filter(user=alice).count() == before
    assert alice_api.get(f"/v1/agents/tasks/{done['task_id']}").json()["status"] == (
        "previewed"
    )
