"""Quota accounting: exact under concurrency, refusing writes past the hard limit."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django.db import connection
from django.db.models import Sum
from django.test import override_settings

from kimberly import rls
from kimberly.context import Actor, Context
from memory import services
from memory.constants import Status, Tier
from memory.models import MemoryItem, Quota
from memory.quotas import QuotaExceeded
from users.models import User

SMALL = {"short-term": 10_000, "long-term": 20_000, "permanent": 40_000}


def _ctx(user) -> Context:
    return Context(Actor("user", str(user.pk)))


def _usage(user, tier: str) -> int:
    return Quota.objects.get(user=user, tier=tier).used_bytes


def _stored(user, tier: str) -> int:
    return (
        MemoryItem.objects.filter(user=user, tier=tier, status=Status.ACTIVE).aggregate(
            s=Sum("size_bytes")
        )["s"]
        or 0
    )


def _in_threads(work: Callable[[int], None], n: int, user: User) -> None:
    """Run work(0..n-1) in n threads, each with its own DB connection, started at
    the same moment, each as `user`'s request would; a thread's exception fails
    the test."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        try:
            barrier.wait()
            with rls.acting_user(user.pk):
                work(i)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


@pytest.mark.django_db(transaction=True)
@override_settings(MEMORY_QUOTA_DEFAULTS=SMALL)
def test_eight_concurrent_writers_never_pass_the_hard_limit_and_usage_stays_exact():
    user = User.objects.create_user(
        email="hammer@example.com", password="x-long-pass-1"
    )
    hard = int(SMALL["short-term"] * 1.25)
    writers, per_writer = 8, 25
    outcomes: dict[str, int] = {"ok": 0, "refused": 0, "deleted": 0}
    lock = threading.Lock()

    def writer(n: int) -> None:
        mine: list[str] = []
        for i in range(per_writer):
            try:
                result = services.memory_create(
                    ctx=_ctx(user),
                    user=user,
                    tier=Tier.SHORT_TERM,
                    content=f"writer {n} item {i} " + "x" * (150 + 37 * ((n + i) % 5)),
                )
                mine.append(result.item.public_id)
                key = "ok"
            except QuotaExceeded:
                key = "refused"
                # Free some room so writers keep racing at the limit.
                if mine:
                    services.memory_delete(
                        ctx=_ctx(user), user=user, memory_id=mine.pop(0)
                    )
                    with lock:
                        outcomes["deleted"] += 1
            with lock:
                outcomes[key] += 1

    _in_threads(writer, writers, user)

    assert outcomes["refused"] > 0, "the writers must actually have hit the limit"
    assert outcomes["ok"] > 0
    used = _usage(user, Tier.SHORT_TERM)
    assert used <= hard
    assert used == _stored(user, Tier.SHORT_TERM)


def _first_writes_at_once(user: User, writers: int) -> list[str]:
    """`writers` threads write the user's first memories at once; the refusals."""
    refused: list[str] = []

    def first_write(n: int) -> None:
        try:
            services.memory_create(
                ctx=_ctx(user), user=user, tier=Tier.LONG_TERM, content=f"note {n}"
            )
        except QuotaExceeded as exc:
            refused.append(f"{user.email}: {exc.details}")

    _in_threads(first_write, writers, user)
    return refused


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_writes_of_a_new_user_are_never_refused():
    """Issue 9: the writers that lost the race to create a new user's quota row
    were refused with 429 although the tier was nearly empty."""
    users, writers = 4, 8
    refused: list[str] = []
    for u in range(users):
        user = User.objects.create_user(
            email=f"newcomer{u}@example.com", password="x-long-pass-1"
        )
        assert not Quota.objects.filter(user=user).exists()
        refused += _first_writes_at_once(user, writers)
        assert _usage(user, Tier.LONG_TERM) == _stored(user, Tier.LONG_TERM)
    assert refused == []
    assert MemoryItem.objects.count() == users * writers


@pytest.mark.django_db
@override_settings(MEMORY_QUOTA_DEFAULTS=SMALL)
def test_a_refused_write_stores_nothing_and_reports_the_numbers(alice):
    content = "y" * 5_000
    services.memory_create(
        ctx=_ctx(alice), user=alice, tier=Tier.SHORT_TERM, content=content
    )
    services.memory_create(
        ctx=_ctx(alice), user=alice, tier=Tier.SHORT_TERM, content=content
    )
    before = _usage(alice, Tier.SHORT_TERM)
    assert before > SMALL["short-term"], "between soft and hard limit writes succeed"
    with pytest.raises(QuotaExceeded) as exc:
        services.memory_create(
            ctx=_ctx(alice), user=alice, tier=Tier.SHORT_TERM, content=content
        )
    details = exc.value.details
    assert details["tier"] == "short-term"
    assert details["used_bytes"] == before
    assert details["limit_bytes"] == SMALL["short-term"]
    assert details["hard_limit_bytes"] == 12_500
    assert _usage(alice, Tier.SHORT_TERM) == before
    assert MemoryItem.objects.filter(user=alice).count() == 2


@pytest.mark.django_db
@override_settings(MEMORY_QUOTA_DEFAULTS=SMALL)
def test_moving_an_item_between_tiers_moves_its_bytes(alice):
    item = services.memory_create(
        ctx=_ctx(alice), user=alice, tier=Tier.SHORT_TERM, content="move me"
    ).item
    services.memory_update(
        ctx=_ctx(alice), user=alice, memory_id=item.public_id, tier=Tier.LONG_TERM
    )
    assert _usage(alice, Tier.SHORT_TERM) == 0
    assert (
        _usage(alice, Tier.LONG_TERM)
        == item.size_bytes
        == _stored(alice, Tier.LONG_TERM)
    )


@pytest.mark.django_db
@override_settings(MEMORY_QUOTA_DEFAULTS=SMALL)
def test_archived_bytes_do_not_count_and_restore_is_quota_checked(alice):
    big = "z" * 9_000
    first = services.memory_create(
        ctx=_ctx(alice), user=alice, tier=Tier.SHORT_TERM, content=big
    ).item
    services.memory_lifecycle(
        ctx=_ctx(alice), user=alice, memory_id=first.public_id, action="archive"
    )
    assert _usage(alice, Tier.SHORT_TERM) == 0
    services.memory_create(
        ctx=_ctx(alice), user=alice, tier=Tier.SHORT_TERM, content=big
    )
    with pytest.raises(QuotaExceeded):
        services.memory_lifecycle(
            ctx=_ctx(alice), user=alice, memory_id=first.public_id, action="restore"
        )
    first.refresh_from_db()
    assert first.status == Status.ARCHIVED
    assert _usage(alice, Tier.SHORT_TERM) == _stored(alice, Tier.SHORT_TERM)


@pytest.mark.django_db
@override_settings(MEMORY_QUOTA_DEFAULTS=SMALL)
def test_a_revert_brings_back_an_earlier_version_and_is_itself_reversible(
    alice_api, alice
):
    created = alice_api.post(
        "/v1/memory",
        {"type": "short-term", "content": "first draft", "metadata": {"tags": ["a"]}},
        format="json",
    ).json()
    mid = created["id"]
    alice_api.patch(
        f"/v1/memory/{mid}",
        {"content": "second draft", "type": "long-term", "metadata": {"tags": ["b"]}},
        format="json",
    )
    resp = alice_api.post(f"/v1/memory/{mid}/revert", {"version": 1}, format="json")
    assert resp.status_code == 200
    body = resp.json()
    assert (body["content"], body["type"], body["metadata"]["tags"]) == (
        "first draft",
        "short-term",
        ["a"],
    )
    assert body["metadata"]["version"] == 3
    assert _usage(alice, "short-term") == body["size_bytes"]
    assert _usage(alice, "long-term") == 0
    history = alice_api.get(f"/v1/memory/{mid}/history").json()["versions"]
    assert [v["action"] for v in history] == ["update", "revert"]
    back = alice_api.post(f"/v1/memory/{mid}/revert", {"version": 2}, format="json")
    assert back.json()["content"] == "second draft"


@pytest.mark.django_db
def test_reverting_to_a_version_that_does_not_exist_is_404_and_changes_nothing(
    alice_api,
):
    mid = alice_api.post(
        "/v1/memory", {"type": "long-term", "content": "only one"}, format="json"
    ).json()["id"]
    resp = alice_api.post(f"/v1/memory/{mid}/revert", {"version": 7}, format="json")
    assert resp.status_code == 404
    assert (
        alice_api.post(
            f"/v1/memory/{mid}/revert", {"version": 0}, format="json"
        ).status_code
        == 400
    )
    assert alice_api.get(f"/v1/memory/{mid}").json()["metadata"]["version"] == 1


def test_the_sql_and_python_quota_rules_agree(alice, settings):
    from django.db import connection

    from memory.quotas import (
        effective_limit_sql,
        hard_limit_sql,
        limit_params,
        quota_overview,
        quota_set,
    )

    settings.MEMORY_QUOTA_DEFAULTS = {
        **settings.MEMORY_QUOTA_DEFAULTS,
        "permanent": 777,
    }
    quota_set(
        ctx=Context(Actor.system("test")),
        user_id=alice.pk,
        tier="long-term",
        limit_bytes=1234,
    )
    with connection.cursor() as cur:
        cur.execute(
            f"""SELECT t.tier, {effective_limit_sql("q", "t.tier")},
                       {hard_limit_sql("q", "t.tier")}
                  FROM unnest(%(tiers)s::text[]) t(tier)
                  LEFT JOIN memory_quota q ON q.user_id = %(user)s AND q.tier = t.tier""",
            {"tiers": list(Tier.values), "user": alice.pk, **limit_params()},
        )
        in_sql = {tier: (int(soft), int(hard)) for tier, soft, hard in cur.fetchall()}
    in_python = {
        t.tier: (t.quota_bytes, t.hard_limit_bytes)
        for t in quota_overview(user_id=alice.pk)
    }
    assert in_sql == in_python
    assert in_python["long-term"][0] == 1234 and in_python["permanent"][0] == 777
