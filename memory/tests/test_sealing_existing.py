"""Rows stored before sealing existed, made to keep its rules: `./cli memory
seal-existing` and `reembed` drop the vectors a sensitive item may not have,
and seal the history of an item that was sensitive once; the compliance count
sees such history; an erasure leaves no unwrapped key in the erasing process."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from memory import indexing
from memory.metadata import MetadataPatch
from memory.models import MemoryEmbedding, MemoryItem, MemoryVersion
from memory.selectors import unsealed_items, unsealed_sensitive_count
from memory.services import memory_update
from memory.tests.factories import ctx_for, grant, memory_for
from privacy.erasure.services import user_purge
from users import consents, keys
from users.models import Consent, DataKey, User

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_keys")]

SECRET = "The quokka vault word is tangerine"
SENSITIVE: MetadataPatch = {"sensitive": True}


def _legacy_vector(user: User, text: str = SECRET) -> MemoryItem:
    """A sensitive item with a vector made before the vector consent existed:
    embedded under model_context, whose row then lapses without its hook (a
    database from before sealing has no model_context consent at all)."""
    grant(user, consents.Purpose.MODEL_CONTEXT)
    item = memory_for(user, text, metadata=SENSITIVE)
    assert indexing.memory_embed_items([item.id]) == 1
    Consent.objects.filter(user=user, purpose="model_context").update(
        withdrawn_at=timezone.now()
    )
    return item


def _has_vector(item: MemoryItem) -> bool:
    ref = MemoryItem.objects.values_list("embedding_ref", flat=True).get(pk=item.pk)
    return bool(ref) or MemoryEmbedding.objects.filter(item_id=item.pk).exists()


def test_seal_existing_drops_a_vector_a_sensitive_item_may_not_have(alice, bob):
    item = _legacy_vector(alice)
    # bob's stands: his sensitive item keeps its vector
    grant(bob, consents.Purpose.MODEL_CONTEXT)
    kept = memory_for(bob, "Bob's quokka vault word is pomelo", metadata=SENSITIVE)
    assert indexing.memory_embed_items([kept.id]) == 1
    call_command("memory", "seal-existing")
    assert not _has_vector(item)
    assert _has_vector(kept)


def test_reembed_drops_a_vector_a_sensitive_item_may_not_have(alice):
    item = _legacy_vector(alice)
    call_command("memory", "reembed")
    assert not _has_vector(item)


def test_reembed_drops_it_even_while_the_user_has_embeddings_off(alice):
    item = _legacy_vector(alice)
    User.objects.filter(pk=alice.pk).update(embedding_enabled=False)
    call_command("memory", "reembed")
    assert not _has_vector(item)


def _formerly_sensitive(user: User) -> MemoryItem:
    """An item sensitive once, ordinary now, whose version of then was kept in
    plain text (as a database from before sealing holds it)."""
    item = memory_for(user, SECRET, metadata=SENSITIVE)
    memory_update(
        ctx=ctx_for(user),
        user=user,
        memory_id=item.public_id,
        metadata={"sensitive": False},
        content="something harmless now",
    )
    MemoryVersion.objects.filter(item_id=item.pk, version=1).update(
        content=SECRET, sealed=None
    )
    return item


def _versions_holding(word: str) -> int:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM memory_memoryversion WHERE content ILIKE %s",
            [f"%{word}%"],
        )
        return int(cur.fetchone()[0])


def test_seal_existing_seals_the_history_of_a_formerly_sensitive_item(alice, bob):
    item = _formerly_sensitive(alice)
    memory_for(bob, "an ordinary note")
    assert unsealed_sensitive_count() == 1
    assert unsealed_sensitive_count(user=alice) == 1
    assert list(unsealed_items().filter(user_id=alice.pk)) == [item]
    assert not unsealed_items().filter(user_id=bob.pk).exists()
    call_command("memory", "seal-existing")
    assert unsealed_sensitive_count() == 0
    assert _versions_holding("tangerine") == 0
    v1 = MemoryVersion.objects.get(item_id=item.pk, version=1)
    assert v1.content == "" and v1.sealed is not None
    assert keys.unseal(alice, bytes(v1.sealed)) == SECRET
    # the item itself is ordinary now: still in plain text, still searchable
    current = MemoryItem.objects.get(pk=item.pk)
    assert current.sealed is None and current.content == "something harmless now"
    call_command("memory", "seal-existing")  # idempotent
    assert unsealed_sensitive_count() == 0


def test_the_history_of_a_formerly_sensitive_item_reads_as_before(alice, alice_api):
    item = _formerly_sensitive(alice)
    call_command("memory", "seal-existing")
    r = alice_api.get(f"/v1/memory/{item.public_id}/history")
    assert r.status_code == 200, r.content
    assert SECRET in r.content.decode()


def test_every_version_is_counted_and_sealed_with_seal_all_content(alice, settings):
    item = memory_for(alice, "plain once")
    memory_update(
        ctx=ctx_for(alice), user=alice, memory_id=item.public_id, content="plain now"
    )
    settings.SEAL_ALL_CONTENT = True
    assert unsealed_sensitive_count() == 1
    call_command("memory", "seal-existing")
    assert unsealed_sensitive_count() == 0
    assert not MemoryVersion.objects.filter(item_id=item.pk, sealed=None).exists()


def test_the_compliance_check_sees_the_plain_history(alice):
    from privacy.compliance.checks import encryption_configured

    _formerly_sensitive(alice)
    check = encryption_configured(alice.pk, timezone.now())
    assert check.details["unsealed"] == 1 and not check.ok
    call_command("memory", "seal-existing")
    check = encryption_configured(alice.pk, timezone.now())
    assert check.details["unsealed"] == 0


def test_an_erasure_leaves_no_unwrapped_data_key_in_the_erasing_process(alice):
    item = memory_for(alice, SECRET, metadata=SENSITIVE)
    sealed = MemoryItem.objects.values_list("sealed", flat=True).get(pk=item.pk)
    assert sealed is not None
    blob = bytes(sealed)
    uid = alice.pk
    assert keys.unseal(uid, blob) == SECRET  # the key is cached now
    user_purge(ctx=ctx_for(alice), user=alice)
    assert not DataKey.objects.filter(user_id=uid).exists()
    with pytest.raises(keys.KeyUnavailable):
        keys.unseal(uid, blob)  # a copy from a backup no longer opens
