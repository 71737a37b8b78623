"""Envelope encryption: per-user data keys wrapped by a KMS key-encryption key
(local by default; AWS KMS through boto3 against a local stand-in), sealing and
opening, rotation without re-encryption, and crypto-shredding."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import transaction

from kimberly import kms
from tests.standins.kms_server import KmsStandin
from users import keys
from users.models import DataKey

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def local_keys(settings: Any, tmp_path: Path) -> Iterator[Path]:
    """A key file of this test's own (made on first use), never var/'s."""
    settings.KMS_LOCAL_KEYS = ""
    settings.KMS_LOCAL_KEY_ID = ""
    settings.KMS_LOCAL_KEY_FILE = str(tmp_path / "kms" / "local-keys.json")
    settings.KMS_PROVIDER = "local"
    settings.KMS_AWS_KEY_ID = ""
    kms.providers.cache_clear()
    keys._cache.clear()
    yield Path(settings.KMS_LOCAL_KEY_FILE)
    kms.providers.cache_clear()
    keys._cache.clear()


@pytest.fixture
def aws(settings: Any) -> Iterator[KmsStandin]:
    standin = KmsStandin().start()
    settings.KMS_AWS_KEY_ID = "alias/kimberly"
    settings.KMS_AWS_ENDPOINT_URL = standin.url
    settings.AWS_ACCESS_KEY_ID, settings.AWS_SECRET_ACCESS_KEY = "test", "test"
    kms.providers.cache_clear()
    yield standin
    standin.stop()


def test_a_sealed_value_opens_for_its_user_only(alice, bob, local_keys):
    blob = keys.seal(alice, "My bank PIN is 4321")
    assert b"4321" not in blob and keys.key_version(blob) == 1
    assert keys.unseal(alice, blob) == "My bank PIN is 4321"
    keys.seal(bob, "bob's")
    with pytest.raises(keys.KeyUnavailable):
        keys.unseal(bob, blob)  # another user's key and associated data
    row = DataKey.objects.get(user=alice)
    assert row.kek_id == "local:k1" and len(bytes(row.wrapped)) == 12 + 32 + 16
    assert oct(local_keys.stat().st_mode)[-3:] == "600"


def test_rotation_rewraps_every_data_key_and_old_ciphertext_still_opens(
    alice, bob, capsys
):
    a, b = keys.seal(alice, "alpha"), keys.seal(bob, "beta")
    before = {r.user_id: bytes(r.wrapped) for r in DataKey.objects.all()}
    call_command("keys", "rotate", "--new-local-key")
    out = capsys.readouterr().out
    assert "re-wrapped 2 data key(s) under local:k2" in out
    keys._cache.clear()  # as a fresh process would
    assert {r.kek_id for r in DataKey.objects.all()} == {"local:k2"}
    assert all(bytes(r.wrapped) != before[r.user_id] for r in DataKey.objects.all())
    assert (keys.unseal(alice, a), keys.unseal(bob, b)) == ("alpha", "beta")
    call_command("keys", "rotate")
    assert "re-wrapped 0 data key(s)" in capsys.readouterr().out


def test_aws_kms_wraps_through_the_standin_and_a_rotation_moves_keys_there(
    alice, settings, aws
):
    local_blob = keys.seal(alice, "sealed under the local key")
    settings.KMS_PROVIDER = "aws"
    assert keys.keys_rotate().kek_id == "aws:alias/kimberly"
    assert "Encrypt" in aws.calls
    keys._cache.clear()
    assert keys.unseal(alice, local_blob) == "sealed under the local key"
    assert "Decrypt" in aws.calls
    assert DataKey.objects.get(user=alice).kek_id == "aws:alias/kimberly"


def test_destroying_the_data_key_makes_every_copy_unreadable(alice):
    blob = keys.seal(alice, "in a backup somewhere")
    assert keys.data_keys_destroy(alice) == 1
    with pytest.raises(keys.KeyUnavailable):
        keys.unseal(alice, blob)


def test_a_data_key_of_a_rolled_back_transaction_never_seals_anything(alice):
    class Undone(Exception):
        pass

    with pytest.raises(Undone), transaction.atomic():
        keys.seal(alice, "written, then rolled back")  # makes (and caches) a key
        raise Undone
    assert not DataKey.objects.filter(user=alice).exists()
    blob = keys.seal(alice, "kept")  # a new data key, not the cached one
    keys._cache.clear()  # as another process, or after the cache expired
    assert keys.unseal(alice, blob) == "kept"


def test_a_sealed_value_opens_by_the_user_id_alone_in_one_query(
    alice, django_assert_num_queries
):
    blob = keys.seal(alice.pk, "by id")
    with django_assert_num_queries(0):  # the key is cached: no query, no KMS
        assert [keys.unseal(alice.pk, blob) for _ in range(3)] == ["by id"] * 3
    keys._cache.clear()
    with django_assert_num_queries(1):
        assert [keys.unseal(str(alice.pk), blob) for _ in range(3)] == ["by id"] * 3


def test_keys_from_the_environment(settings, alice):
    import base64
    import secrets

    k = base64.b64encode(secrets.token_bytes(32)).decode()
    settings.KMS_LOCAL_KEYS = f"prod1:{k}"
    kms.providers.cache_clear()
    blob = keys.seal(alice, "x")
    assert DataKey.objects.get(user=alice).kek_id == "local:prod1"
    assert keys.unseal(alice, blob) == "x"
    assert not Path(settings.KMS_LOCAL_KEY_FILE).exists()  # no file needed


def test_a_new_local_key_never_takes_the_id_of_one_removed(local_keys, alice):
    import json as _json

    keys.seal(alice, "x")  # makes the file, with k1
    assert [kms.add_local_key(local_keys), kms.add_local_key(local_keys)] == [
        "k2",
        "k3",
    ]
    stored = _json.loads(local_keys.read_text())
    del stored["k1"]  # an operator retires the first key
    local_keys.write_text(_json.dumps(stored))
    assert kms.add_local_key(local_keys) == "k4"  # not k3 again
