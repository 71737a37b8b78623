"""Sensitive memories sealed at rest (memory/sealing.py): what PostgreSQL and Redis
hold of one (no plaintext in any column or index), every read path still gets
its text, rotation and erasure, the vector consent, seal-all and seal-existing."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django_redis import get_redis_connection

from kimberly import kms
from memory import gateway, indexing
from memory.constants import Tier
from memory.metadata import MetadataPatch
from memory.models import MemoryEmbedding, MemoryItem, MemoryVersion
from memory.selectors import unsealed_sensitive_count
from memory.services import memory_revert, memory_update
from memory.short_term import short_term_context
from memory.tests.factories import ctx_for, grant, memory_for
from privacy.exports import records
from users import consents, keys
from users.models import User

pytestmark = pytest.mark.django_db

# Words no hex dump of a ciphertext nor a vector's digits can spell by chance.
OLD = "The quokka vault word is tangerine"
NEW = "The zanzibar vault word is marmalade"
WORDS = ("quokka", "tangerine", "zanzibar", "marmalade", "vault")
SENSITIVE: MetadataPatch = {"sensitive": True}


@pytest.fixture(autouse=True)
def _fresh_keys() -> Any:
    kms.providers.cache_clear()
    keys.cache_clear()
    yield
    keys.cache_clear()


def _blob(value: bytes | memoryview | None) -> bytes:
    assert value is not None
    return bytes(value)


def _plaintext_in_database(words: tuple[str, ...] = WORDS) -> dict[str, list[str]]:
    """Every table of the schema whose rows, as text (every column: the bytea as
    hex, the tsvector as its lexemes), hold one of `words`."""
    found: dict[str, list[str]] = {}
    with connection.cursor() as cur:
        cur.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        )
        for (table,) in cur.fetchall():
            for word in words:
                cur.execute(
                    f'SELECT count(*) FROM "{table}" t WHERE t::text ILIKE %s',  # nosec B608
                    [f"%{word}%"],
                )
                if cur.fetchone()[0]:
                    found.setdefault(table, []).append(word)
    return found


def _plaintext_in_redis(words: tuple[str, ...] = WORDS) -> list[str]:
    conn = get_redis_connection("default")
    dumped = []
    for key in conn.scan_iter("*"):
        kind = conn.type(key).decode()
        if kind == "string":
            dumped.append(conn.get(key) or b"")
        elif kind == "hash":
            dumped += [k + v for k, v in conn.hgetall(key).items()]
        elif kind in ("set", "zset"):
            members = conn.smembers(key) if kind == "set" else conn.zrange(key, 0, -1)
            dumped += list(members)
    text = b" ".join(dumped).decode(errors="replace").lower()
    return [w for w in words if w in text]


def _sealed_item(alice: Any, tier: str = Tier.SHORT_TERM) -> MemoryItem:
    item = memory_for(alice, OLD, tier=tier, metadata=SENSITIVE)
    return memory_update(
        ctx=ctx_for(alice), user=alice, memory_id=item.public_id, content=NEW
    )


def test_postgresql_and_redis_hold_no_plaintext_of_a_sensitive_item(alice, alice_api):
    grant(alice, consents.Purpose.MODEL_CONTEXT)  # so it has a vector, too
    item = _sealed_item(alice)
    assert indexing.memory_embed_items([item.id]) == 1
    short_term_context(user_id=alice.pk)  # the session copy, rebuilt in Redis
    assert MemoryEmbedding.objects.filter(item_id=item.id).exists()
    with connection.cursor() as cur:
        cur.execute(
            "SELECT content, search_vector::text, sealed FROM memory_memoryitem"
            " WHERE id = %s",
            [item.id],
        )
        content, tsv, blob = cur.fetchone()
        cur.execute(
            "SELECT content, sealed FROM memory_memoryversion WHERE item_id = %s",
            [item.id],
        )
        versions = cur.fetchall()
    assert (content, tsv) == ("", "")
    assert keys.key_version(bytes(blob)) == 1
    assert len(versions) == 1 and versions[0][0] == "" and versions[0][1]
    assert _plaintext_in_database() == {}
    assert _plaintext_in_redis() == []
    # ... while every reader still gets the text.
    r = alice_api.get(f"/v1/memory/{item.public_id}")
    assert r.status_code == 200 and r.json()["content"] == NEW
    assert [e["content"] for e in short_term_context(user_id=alice.pk)] == [NEW]


def test_every_read_path_gets_the_plaintext_of_a_sealed_item(alice, alice_api):
    grant(alice, consents.Purpose.MODEL_CONTEXT)
    item = _sealed_item(alice)
    got = alice_api.get(f"/v1/memory/{item.public_id}").json()["content"]
    listed = [i["content"] for i in alice_api.get("/v1/memory").json()["items"]]
    history = alice_api.get(f"/v1/memory/{item.public_id}/history").json()
    indexing.memory_embed_items([item.id])
    r = alice_api.post(
        "/v1/memory/query",
        {"query": NEW, "filters": {"include_sensitive": True}},
        format="json",
    )
    queried = [h["item"]["content"] for h in r.json()["results"]]
    chat = [m.content for m in gateway.recall(user=alice, query="hello", limit=5)]
    exported = next(records.memories(alice))
    states = gateway.memory_states(user=alice, item_ids=[item.id])
    assert (got, listed, queried, chat) == (NEW, [NEW], [NEW], [NEW])
    assert history["current"]["content"] == NEW
    assert [v["content"] for v in history["versions"]] == [OLD]
    assert exported["content"] == NEW
    assert [v["content"] for v in exported["versions"]] == [OLD]
    assert states[item.id].digest == gateway.content_digest(NEW)


def test_revert_of_a_sealed_version_brings_back_its_text_sealed(alice, alice_api):
    item = _sealed_item(alice, tier=Tier.LONG_TERM)
    back = memory_revert(
        ctx=ctx_for(alice), user=alice, memory_id=item.public_id, version=1
    )
    assert back.content == OLD
    assert MemoryItem.objects.get(pk=item.pk).content == OLD
    raw = MemoryItem.objects.filter(pk=item.pk).values_list("content", "sealed")
    assert raw[0][0] == "" and raw[0][1] is not None
    assert _plaintext_in_database() == {}


def test_unmarking_sensitive_unseals_the_item_but_not_its_sealed_history(alice):
    item = _sealed_item(alice, tier=Tier.LONG_TERM)
    memory_update(
        ctx=ctx_for(alice),
        user=alice,
        memory_id=item.public_id,
        metadata={"sensitive": False},
    )
    row = MemoryItem.objects.filter(pk=item.pk).values("content", "sealed").get()
    assert row == {"content": NEW, "sealed": None}
    assert not MemoryVersion.objects.filter(item=item, sealed__isnull=True).exists()
    with connection.cursor() as cur:
        cur.execute(
            "SELECT search_vector::text FROM memory_memoryitem WHERE id = %s",
            [item.id],
        )
        assert "zanzibar" in cur.fetchone()[0]  # full-text again


def test_marking_an_item_sensitive_seals_it_and_its_history(alice):
    grant(alice, consents.Purpose.SENSITIVE_MEMORY)
    item = memory_for(alice, OLD)
    item = memory_update(
        ctx=ctx_for(alice), user=alice, memory_id=item.public_id, content=NEW
    )
    indexing.memory_embed_items([item.id])
    assert MemoryEmbedding.objects.filter(item_id=item.id).exists()
    memory_update(
        ctx=ctx_for(alice), user=alice, memory_id=item.public_id, metadata=SENSITIVE
    )
    assert _plaintext_in_database() == {}
    # its vector went with it: no model_context consent
    assert not MemoryEmbedding.objects.filter(item_id=item.id).exists()
    assert MemoryItem.objects.get(pk=item.pk).content == NEW


def test_rotation_of_the_key_encryption_key_leaves_sealed_items_readable(
    alice, alice_api, settings, tmp_path
):
    settings.KMS_LOCAL_KEYS, settings.KMS_LOCAL_KEY_ID = "", ""
    settings.KMS_LOCAL_KEY_FILE = str(tmp_path / "kms" / "local-keys.json")
    kms.providers.cache_clear()
    item = _sealed_item(alice)
    before = MemoryItem.objects.filter(pk=item.pk).values_list("sealed", flat=True)[0]
    call_command("keys", "rotate", "--new-local-key")
    keys.cache_clear()  # as a fresh process would
    assert alice_api.get(f"/v1/memory/{item.public_id}").json()["content"] == NEW
    after = MemoryItem.objects.filter(pk=item.pk).values_list("sealed", flat=True)[0]
    assert _blob(after) == _blob(before)  # content was not re-encrypted


def test_a_sealed_blob_copied_before_erasure_no_longer_opens(alice):
    item = _sealed_item(alice)
    copied = _blob(MemoryItem.objects.values_list("sealed", flat=True).get(pk=item.pk))
    assert keys.unseal(alice, copied) == NEW
    keys.data_keys_destroy(alice)
    with pytest.raises(keys.KeyUnavailable):
        keys.unseal(alice, copied)
    # the row itself reads as "" (logged), so that erasure can still delete it
    assert MemoryItem.objects.get(pk=item.pk).content == ""


def test_a_sensitive_item_has_a_vector_only_with_model_context(alice, alice_api):
    item = memory_for(alice, NEW, metadata=SENSITIVE)
    assert indexing.memory_embed_items([item.id]) == 0
    body = {"embeddings": [{"memory_id": item.public_id, "embedding": [0.1] * 384}]}
    r = alice_api.post("/v1/memory/embed", body, format="json")
    assert r.status_code == 400 and r.json()["error"] == "consent_required"
    assert alice_api.get("/v1/memory/metrics").json()["embedding_pending"] == 0
    grant(alice, consents.Purpose.MODEL_CONTEXT)
    assert indexing.memory_embed_items([item.id]) == 1
    assert MemoryItem.objects.get(pk=item.pk).embedding_ref.startswith("emb_")
    r = alice_api.delete("/v1/user/consents/model_context")
    assert r.status_code == 200
    assert not MemoryEmbedding.objects.filter(item_id=item.id).exists()
    assert MemoryItem.objects.get(pk=item.pk).embedding_ref == ""
    assert indexing.memory_embed_items([item.id]) == 0


def test_granting_model_context_queues_the_vectors_of_sensitive_items(
    alice, alice_api, django_capture_on_commit_callbacks
):
    item = memory_for(alice, NEW, metadata=SENSITIVE)
    conn = get_redis_connection("default")
    conn.delete(indexing.PENDING_KEY)
    with django_capture_on_commit_callbacks(execute=True):
        r = alice_api.post(
            "/v1/user/consents", {"purpose": "model_context"}, format="json"
        )
    assert r.status_code == 201
    assert str(item.id).encode() in conn.smembers(indexing.PENDING_KEY)


def test_seal_all_content_seals_every_item_and_imports_too(alice, alice_api, settings):
    settings.SEAL_ALL_CONTENT = True
    plain = memory_for(alice, OLD)
    data = [{"content": NEW, "created_at": "2021-05-01T09:30:00Z"}]
    r = alice_api.post(
        "/v1/memory/import", {"format": "json", "data": data}, format="json"
    )
    assert r.status_code == 201, r.content
    assert not MemoryItem.objects.filter(user=alice, sealed__isnull=True).exists()
    assert _plaintext_in_database() == {}
    texts = {i["content"] for i in alice_api.get("/v1/memory").json()["items"]}
    assert texts == {OLD, NEW}
    # a non-sensitive item sealed by the setting is embedded without consent
    assert indexing.memory_embed_items([plain.id]) == 1


def test_seal_existing_seals_what_was_stored_in_plain_text_once(alice, settings):
    grant(alice, consents.Purpose.SENSITIVE_MEMORY)
    item = memory_for(alice, OLD, tier=Tier.SHORT_TERM, metadata=SENSITIVE)
    memory_update(ctx=ctx_for(alice), user=alice, memory_id=item.public_id, content=NEW)
    # as stored before sealing existed
    MemoryItem.objects.filter(pk=item.pk).update(content=NEW, sealed=None)
    MemoryVersion.objects.filter(item_id=item.pk).update(content=OLD, sealed=None)
    memory_for(alice, "an ordinary note")
    assert unsealed_sensitive_count() == 1
    assert unsealed_sensitive_count(user=alice) == 1
    call_command("memory", "seal-existing")
    assert unsealed_sensitive_count() == 0
    assert _plaintext_in_database() == {}
    assert MemoryItem.objects.get(pk=item.pk).content == NEW
    call_command("memory", "seal-existing")  # idempotent
    assert unsealed_sensitive_count() == 0
    settings.SEAL_ALL_CONTENT = True
    assert unsealed_sensitive_count() == 1  # the ordinary note, now


def test_a_row_loaded_without_its_ciphertext_still_reads_its_text(alice):
    item = _sealed_item(alice)
    loaded = MemoryItem.objects.only("id", "user_id", "content").get(pk=item.pk)
    assert loaded.content == NEW


def test_proposals_know_a_sealed_memory_and_are_not_duplicated(alice):
    memory_for(alice, NEW, metadata=SENSITIVE)
    made = gateway.propose(
        ctx=ctx_for(alice), user=alice, facts=[NEW.upper(), "brand new"], origin="t"
    )
    assert [p.content for p in made] == ["brand new"]


def test_the_admin_shows_neither_text_nor_ciphertext_of_a_sensitive_item(alice, client):
    item = _sealed_item(alice, tier=Tier.LONG_TERM)
    client.force_login(
        User.objects.create_superuser(email="root@example.com", password="x")
    )
    page = client.get(f"/admin/memory/memoryitem/{item.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode().lower()
    blob = _blob(MemoryItem.objects.values_list("sealed", flat=True).get(pk=item.pk))
    assert not [w for w in WORDS if w in html]
    assert "field-sealed" not in html and blob.hex() not in html
    assert "field-sensitive" in html  # the page shows the item's metadata
