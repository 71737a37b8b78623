"""Erasure with a receipt: alice is gone from every store, bob is untouched, and a
new table or Redis key without an eraser fails the suite."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from django_redis import get_redis_connection

from agents.models import AgentTask, Event, Reminder, UserAgentSwitch
from audit.models import AuditEvent
from chat.models import Conversation
from chat.transcripts import transcript_write
from kimberly import storage
from memory import meditation
from memory.constants import Tier
from memory.indexing.vectors import memory_embed_items
from memory.models import MemoryItem
from memory.retrieval.provenance import flush_retrieval_log
from memory.services.goals import goal_create
from memory.services.proposals import proposals_create
from memory.short_term import short_term_context
from memory.tests.factories import ctx_for, memory_for
from privacy.erasure import redis_keys, stores
from privacy.erasure.models import Deletion
from privacy.erasure.services import deletion_run
from tests.test_architecture import APPS
from users import keys
from users.tests.factories import DEFAULT_PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
URL = "/v1/user/delete"


def _fill(user: Any, client: Any, api: Any) -> bytes:
    """Data of `user` in every store, made through the services and the API."""
    memory_for(user, f"{user.email} takes tea with lemon")
    memory_for(user, f"{user.email} short note", tier=Tier.SHORT_TERM)
    memory_for(user, f"{user.email} permanent fact", tier=Tier.PERMANENT)
    memory_for(user, f"{user.email} archived thought", archived=True)
    memory_for(
        user, f"{user.email} PIN 4321", metadata={"sensitive": True}
    )  # + consent
    sealed = keys.seal(user, f"{user.email} sealed secret")  # + a data key
    goal_create(ctx=ctx_for(user), user=user, text="Learn Portuguese")
    proposals_create(ctx=ctx_for(user), user=user, facts=["likes jazz"], origin="t")
    r = client.post(
        "/v1/attachments",
        {"file": _upload("notes.txt", b"Meeting notes: buy lemons.\n")},
        format="multipart",
    )
    assert r.status_code == 201, r.content
    data = [{"content": "Moved to Lisbon", "created_at": "2021-05-01T09:30:00Z"}]
    r = client.post(
        "/v1/memory/import", {"format": "json", "data": data}, format="json"
    )
    assert r.status_code == 201, r.content
    storage.put_bytes(storage.user_key(user.pk, "imports", "big.json"), b"[]", "x/y")
    storage.put_bytes(storage.user_key(user.pk, "exports", "e.zip"), b"PK", "x/y")
    r = client.post("/v1/chat", {"message": "Hello there"}, format="json")
    assert r.status_code == 200, r.content
    transcript_write(Conversation.objects.get(user=user))
    memory_embed_items(
        list(MemoryItem.objects.filter(user=user).values_list("pk", flat=True))
    )
    assert (
        client.post("/v1/memory/query", {"query": "tea"}, format="json").status_code
        == 200
    )
    flush_retrieval_log()
    assert client.get("/v1/memory/forecast").status_code == 200
    run = meditation.meditation_queue(user=user)
    meditation.meditation_run_batch([run.pk])
    task = AgentTask.objects.create(user=user, agent="reminder", task="x", timeout=60)
    due = timezone.now() + timedelta(days=1)
    Reminder.objects.create(
        user=user, task=task, what="call", due_at=due, time_zone="UTC"
    )
    Event.objects.create(
        user=user, task=task, uid="u1", title="t", starts_at=due, source="ics"
    )
    UserAgentSwitch.objects.create(user=user, agent="coder", enabled=False)
    api.post(
        "/v1/login", {"email": user.email, "password": DEFAULT_PASSWORD}, format="json"
    )
    Client().force_login(user)
    short_term_context(user_id=user.pk)  # the session context, rebuilt into Redis
    get_redis_connection("default").sadd(
        redis_keys.EMBED_PENDING,
        *[str(i.pk) for i in MemoryItem.objects.filter(user=user)],
    )
    return sealed


def _upload(name: str, data: bytes) -> Any:
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type="text/plain")


def _holdings(user_id: uuid.UUID) -> dict[str, int]:
    """What every store holds of a user, probed independently of the receipt."""
    s = redis_keys.Subject(user_id=user_id)
    sql = {k: v for k, v in stores.sql_probe(s).items() if v}
    conn = get_redis_connection("default")
    return {
        **sql,
        "redis:kb:st": len(list(conn.scan_iter(f"kb:st:{user_id}:*"))),
        "redis:log": sum(
            str(user_id).encode() in e for e in conn.lrange("kb:retrieval:log", 0, -1)
        ),
        "s3": storage.count_prefix(storage.user_prefix(user_id)),
        "sessions": stores.sessions_probe(s),
    }


def _request(client: Any) -> dict[str, Any]:
    r = client.post(URL, {"confirm": True}, format="json")
    assert r.status_code == 202, r.content
    return r.json()


def test_erasure_leaves_nothing_of_alice_in_any_store_and_bob_untouched(
    alice: Any, bob: Any, alice_api: Any, bob_api: Any, api: Any
) -> None:
    sealed = _fill(alice, alice_api, api)
    _fill(bob, bob_api, api)
    # The sensitive memory's row, as a backup would have kept it: sealed.
    pin = MemoryItem.objects.get(user=alice, sensitive=True)
    backup = MemoryItem.objects.values_list("sealed", flat=True).get(pk=pin.pk)
    assert backup is not None
    assert keys.unseal(alice, bytes(backup)) == pin.content
    for client in (alice_api, bob_api):  # read provenance still queued in Redis
        client.post("/v1/memory/query", {"query": "lemon"}, format="json")
    before = _holdings(alice.pk)
    assert {
        "memory.MemoryItem",
        "memory.RetrievalRecord",
        "memory.ScoreRecord",
        "memory.MemoryEmbedding",
        "chat.Message",
        "agents.Event",
    } <= before.keys()
    assert before["redis:kb:st"] and before["redis:log"] and before["s3"] >= 4
    assert before["sessions"] == 1
    bob_before = _holdings(bob.pk)
    bob_pending = get_redis_connection("default").scard(redis_keys.EMBED_PENDING)

    body = _request(alice_api)
    deletion_run(deletion_id=body["deletion_id"].removeprefix("del_"))

    after = _holdings(alice.pk)
    assert {k: v for k, v in after.items() if v} == {}
    conn = get_redis_connection("default")
    assert not list(conn.scan_iter(f"*{alice.pk}*"))
    assert not list(conn.scan_iter("kb:qemb:*"))  # not attributable: all dropped
    assert _holdings(bob.pk) == bob_before
    assert conn.scard(redis_keys.EMBED_PENDING) < bob_pending
    assert MemoryItem.objects.filter(user=bob).count() >= 5

    r = api.get(
        f"{URL}/{body['deletion_id']}", {"receipt_token": body["receipt_token"]}
    )
    assert r.status_code == 200, r.content
    out = r.json()
    assert out["status"] == "succeeded"
    receipt = out["receipt"]
    assert receipt["verified"] is True and "subject" not in receipt
    entries = {(e["store"], e["name"]): e for e in receipt["stores"]}
    assert {e["verification"]["result"] for e in receipt["stores"]} == {"ok", "kept"}
    assert entries[("postgresql", "memory_memoryitem")]["deleted"] >= 6
    assert entries[("postgresql", "memory_retrievalrecord")]["deleted"] >= 1
    assert entries[("postgresql", "users_user")]["deleted"] == 1
    assert entries[("s3", f"users/{alice.pk}/")]["deleted"] >= 4
    assert entries[("redis", "kb:st:")]["deleted"] >= 1
    assert entries[("redis", "kb:retrieval:log")]["deleted"] >= 1
    # chat, login_email, and the API counters of each group alice used
    assert entries[("redis", "kb:rl:")]["deleted"] >= 3
    shredded = entries[("data_key", "users_datakey")]
    assert shredded["deleted"] == 1 and shredded["verification"]["result"] == "ok"
    assert entries[("postgresql", "users_consent")]["deleted"] == 1
    # Not even the erasing process still opens it (its cached key went too).
    with pytest.raises(keys.KeyUnavailable):
        keys.unseal(alice, sealed)
    with pytest.raises(keys.KeyUnavailable):
        keys.unseal(alice.pk, bytes(backup))
    tables = {apps.get_model(t)._meta.db_table for t in stores.user_tables()}
    kept = {apps.get_model(label)._meta.db_table for label in stores.SQL_KEPT}
    assert tables - kept <= {n for _, n in entries}
    # Tombstones: the chain stays, ends with the erasure, and holds no content.
    events = list(AuditEvent.objects.filter(user_id=alice.pk).order_by("seq"))
    assert events[-1].action == "privacy.delete_done"
    assert "privacy.delete_request" in {e.action for e in events}
    assert all("lemon" not in str(e.details) for e in events)
    call_command("audit", "verify", stdout=StringIO())  # raises on a broken chain


def test_the_request_kills_tokens_and_stops_the_account_at_once(
    alice: Any, alice_api: Any, api: Any
) -> None:
    memory_for(alice)
    body = _request(alice_api)
    assert body["deletion_id"].startswith("del_") and len(body["receipt_token"]) >= 32
    assert alice_api.get("/v1/user").status_code == 401
    alice.refresh_from_db()
    assert alice.is_active is False
    r = api.post(
        "/v1/login", {"email": alice.email, "password": DEFAULT_PASSWORD}, format="json"
    )
    assert r.status_code == 401
    deletion = Deletion.objects.get()
    assert (
        deletion.status == "queued" and body["receipt_token"] not in deletion.token_hash
    )
    r = api.get(
        f"{URL}/{body['deletion_id']}", {"receipt_token": body["receipt_token"]}
    )
    assert r.status_code == 200 and r.json()["receipt"] is None


def test_without_confirm_it_is_400_and_nothing_changes(
    alice: Any, alice_api: Any
) -> None:
    for payload in ({}, {"confirm": False}):
        r = alice_api.post(URL, payload, format="json")
        assert r.status_code == 400 and r.json()["error"] == "confirmation_required"
    r = alice_api.post(URL, {"confirm": "yes"}, format="json")
    assert r.status_code == 400
    assert alice_api.get("/v1/user").status_code == 200
    assert not Deletion.objects.exists()


def test_the_receipt_with_a_wrong_token_is_the_same_404_as_a_missing_id(
    alice: Any, alice_api: Any, api: Any
) -> None:
    body = _request(alice_api)
    wrong = api.get(f"{URL}/{body['deletion_id']}", {"receipt_token": "nope"})
    missing = api.get(
        f"{URL}/del_{uuid.uuid4()}", {"receipt_token": body["receipt_token"]}
    )
    garbage = api.get(f"{URL}/xyz", {"receipt_token": "nope"})
    assert wrong.status_code == missing.status_code == garbage.status_code == 404
    assert wrong.json()["error"] == missing.json()["error"] == "not_found"


def test_the_job_runs_twice_harmlessly_and_a_finished_one_is_left_alone(
    alice: Any, alice_api: Any
) -> None:
    memory_for(alice)
    pk = _request(alice_api)["deletion_id"].removeprefix("del_")
    deletion_run(deletion_id=pk)
    done = Deletion.objects.get()
    deletion_run(deletion_id=pk)
    assert Deletion.objects.get().finished_at == done.finished_at
    assert AuditEvent.objects.filter(action="privacy.delete_done").count() == 1


def test_operators_purge_an_account_from_the_cli(alice: Any, bob: Any) -> None:
    memory_for(alice)
    memory_for(bob)
    out = StringIO()
    call_command("user", "purge", "Alice@Example.com", stdout=out)
    assert '"status": "succeeded"' in out.getvalue()
    assert not type(alice).objects.filter(pk=alice.pk).exists()
    assert MemoryItem.objects.filter(user=bob).count() == 1
    actor = AuditEvent.objects.get(action="privacy.delete_done").actor_type
    assert actor == "operator"


# --- the guard: every user table and every Redis key pattern has an eraser ---


def test_every_table_with_a_user_column_is_erased_or_kept_on_purpose() -> None:
    covered = {t.label for t in stores.SQL_TABLES} | stores.SQL_KEPT.keys()
    assert stores.user_tables() - covered == set(), (
        "a table with a user column has no entry in privacy/erasure/stores.py"
    )
    for table in stores.SQL_TABLES:  # every entry still names a real table path
        apps.get_model(table.label)._base_manager.filter(**{table.lookup: uuid.uuid4()})


_KEY = re.compile(r"""[fbr]*["'](kb:[a-z_:]*)""")
_USES_REDIS = re.compile(r"get_redis_connection|from django\.core\.cache import cache")
_NO_KEYS = {"kimberly/health.py"}  # a PING only


def _code() -> list[Path]:
    apps_dirs = ("kimberly", *(a for a in APPS if (ROOT / a).is_dir()))
    return [
        p
        for top in apps_dirs
        for p in (ROOT / top).rglob("*.py")
        if "tests" not in p.parts and "migrations" not in p.parts
    ]


def test_every_redis_key_pattern_in_the_code_is_covered_by_erasure() -> None:
    declared = [k.prefix for k in redis_keys.REDIS_KEYS]
    found: dict[str, set[str]] = {}
    silent = []
    for path in _code():
        if path.is_relative_to(ROOT / "privacy"):
            continue
        text = path.read_text()
        keys = set(_KEY.findall(text))
        for key in keys:
            found.setdefault(key, set()).add(str(path.relative_to(ROOT)))
        rel = str(path.relative_to(ROOT))
        if _USES_REDIS.search(text) and not keys and rel not in _NO_KEYS:
            silent.append(rel)
    uncovered = {
        key: where
        for key, where in found.items()
        if not any(key.startswith(d) for d in declared)
    }
    assert uncovered == {}, (
        "Redis keys without an entry in privacy/erasure/redis_keys.py"
    )
    assert silent == [], "modules using Redis whose keys the guard cannot see"
    assert len(found) >= 9  # the guard really reads the code
