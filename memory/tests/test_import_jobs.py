"""Import jobs under failure: storage outages, reclaimed jobs, lost sends, lock order.

Against the real servers; only the failure itself (an S3 blip, a slow worker, a
broker that dropped a message) is simulated.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, connections, transaction
from django.test import override_settings
from django.utils import timezone

from audit.models import AuditEvent
from kimberly import rls, storage
from kimberly.context import Actor, Context
from memory import tasks
from memory.imports import services as import_services
from memory.imports.formats import parse_import
from memory.models import MemoryImport, MemoryItem
from memory.services.create_many import NewMemory, memory_create_many
from memory.tests.factories import assert_usage_is_exact
from memory.tests.test_imports import URL, _json_list, _ok
from users.models import User

pytestmark = pytest.mark.django_db

AS_JOB = override_settings(IMPORT_SYNC_MAX_RECORDS=1, IMPORT_BATCH_SIZE=1)


def _queue_job(api: Any, n: int = 3) -> str:
    """A queued import job of n records (its task is not sent: `_send` is patched)."""
    queued = _ok(api.post(URL, {"data": _json_list(n)}, format="json"), 202)
    return str(queued["id"]).removeprefix("imp_")


def _import_events(user: Any) -> int:
    return AuditEvent.objects.filter(user_id=user.pk, action="memory.import").count()


@pytest.fixture
def unsent(monkeypatch: pytest.MonkeyPatch) -> list[uuid.UUID]:
    """Tasks the services would send (kept here instead of the broker)."""
    sent: list[uuid.UUID] = []
    monkeypatch.setattr(import_services, "_send", sent.append)
    return sent


# ---------------------------------------------------------- storage outage


@AS_JOB
def test_a_storage_outage_while_reading_the_file_gives_the_job_back_for_the_retry(
    alice_api, alice, monkeypatch, unsent
):
    pk = _queue_job(alice_api)

    def s3_down(key: str) -> bytes:
        raise storage.StorageUnavailable("object storage is unreachable")

    with monkeypatch.context() as m:
        m.setattr(storage, "read_bytes", s3_down)
        with pytest.raises(storage.StorageUnavailable):
            tasks.import_run(pk)  # called directly, the retry re-raises
    imp = MemoryImport.objects.get(pk=pk)
    assert (imp.status, imp.error, imp.finished_at) == ("queued", "", None)
    assert storage.read_bytes(imp.file_key)  # the file is kept for the retry
    assert _import_events(alice) == 0

    assert tasks.import_run(pk) == "succeeded"
    assert MemoryItem.objects.filter(user=alice).count() == 3


# ------------------------------------------------------------ lost claims


@AS_JOB
def test_a_worker_whose_job_was_claimed_again_stops_without_writing(
    alice_api, alice, monkeypatch, unsent
):
    pk = _queue_job(alice_api)
    real_batches = import_services._batches
    taken_over: list[str] = []

    def stalling(records: Any, start: int) -> Any:
        for n, batch in enumerate(real_batches(records, start)):
            if n == 1 and not taken_over:
                # After its first batch the first worker stalls past
                # STALE_SECONDS: a second one claims the job and runs the rest.
                silent = timezone.now() - timedelta(
                    seconds=import_services.STALE_SECONDS + 1
                )
                MemoryImport.objects.filter(pk=pk).update(heartbeat_at=silent)
                taken_over.append("claimed")
                taken_over.append(
                    import_services.memory_import_run(import_id=pk, budget_seconds=60)
                )
            yield batch

    monkeypatch.setattr(import_services, "_batches", stalling)
    assert import_services.memory_import_run(import_id=pk, budget_seconds=60) == "lost"
    assert taken_over == ["claimed", "succeeded"]
    imp = MemoryImport.objects.get(pk=pk)
    # the second worker's counts, not overwritten by the first one's
    assert (imp.status, imp.processed, imp.imported) == ("succeeded", 3, 3)
    assert imp.skipped_duplicate == 0
    assert _import_events(alice) == 1
    assert MemoryItem.objects.filter(user=alice).count() == 3
    assert_usage_is_exact(alice)


@AS_JOB
def test_a_worker_that_lost_its_job_between_batches_does_not_hand_it_over(
    alice_api, alice, monkeypatch, unsent
):
    pk = _queue_job(alice_api)
    real_apply = import_services._apply

    def then_reclaimed(*args: Any, **kwargs: Any) -> None:
        real_apply(*args, **kwargs)
        # another worker's claim (a new token) right after this batch
        MemoryImport.objects.filter(pk=pk).update(claim=uuid.uuid4())

    monkeypatch.setattr(import_services, "_apply", then_reclaimed)
    # no time left after the first batch: it would hand over, but may not
    assert import_services.memory_import_run(import_id=pk, budget_seconds=0) == "lost"
    imp = MemoryImport.objects.get(pk=pk)
    assert (imp.status, imp.processed) == ("running", 1)  # the other worker's
    assert unsent == []  # no hand-over


# ------------------------------------------------------- the periodic task


def _aged(user: Any, status: str, **times: Any) -> MemoryImport:
    imp = MemoryImport.objects.create(
        user=user, format="json", tier="long-term", status=status
    )
    if times:
        MemoryImport.objects.filter(pk=imp.pk).update(**times)
    return imp


def test_imports_left_queued_or_with_a_dead_worker_are_sent_again(alice, unsent):
    now = timezone.now()
    old = now - timedelta(minutes=30)
    silent = now - timedelta(seconds=import_services.STALE_SECONDS + 1)
    lost_send = _aged(alice, "queued", created_at=old)
    given_back = _aged(alice, "queued", created_at=old, heartbeat_at=old)
    dead_worker = _aged(alice, "running", created_at=old, heartbeat_at=silent)
    _aged(alice, "queued")  # just queued: its task is on its way
    _aged(alice, "queued", created_at=old, heartbeat_at=now)  # just handed over
    _aged(alice, "running", created_at=old, heartbeat_at=now)  # working
    _aged(alice, "succeeded", created_at=old, heartbeat_at=old)
    _aged(alice, "failed", created_at=old)

    assert tasks.requeue_stale_imports() == 3
    assert set(unsent) == {lost_send.pk, given_back.pk, dead_worker.pk}


@AS_JOB
def test_an_import_whose_task_was_never_delivered_runs_after_the_requeue(
    alice_api, alice, unsent
):
    pk = _queue_job(alice_api)  # the broker was down: the send went nowhere
    MemoryImport.objects.filter(pk=pk).update(
        created_at=timezone.now() - timedelta(minutes=30)
    )
    unsent.clear()
    tasks.requeue_stale_imports()
    assert unsent == [uuid.UUID(pk)]
    assert tasks.import_run(pk) == "succeeded"
    assert MemoryItem.objects.filter(user=alice).count() == 3


def test_the_requeue_is_scheduled_in_beat():
    from django.conf import settings

    entries = {e["task"]: e for e in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "memory.tasks.requeue_stale_imports" in entries


# ------------------------------------------------------------- file cleanup


@AS_JOB
@pytest.mark.parametrize("outcome", ["succeeded", "failed"])
def test_a_file_the_store_would_not_delete_is_deleted_by_the_periodic_task(
    alice_api, alice, monkeypatch, unsent, outcome
):
    pk = _queue_job(alice_api)
    key = MemoryImport.objects.get(pk=pk).file_key
    if outcome == "failed":  # a file that no longer parses
        storage.put_bytes(key, b"{broken", "application/json")
    real_delete = storage.delete
    refused: list[str] = []

    def flaky_delete(k: str) -> None:
        if not refused:
            refused.append(k)
            raise storage.StorageUnavailable("object storage is unreachable")
        real_delete(k)

    monkeypatch.setattr(storage, "delete", flaky_delete)
    assert tasks.import_run(pk) == outcome
    imp = MemoryImport.objects.get(pk=pk)
    assert (imp.status, imp.file_key, refused) == (outcome, key, [key])
    assert storage.read_bytes(key)  # still in the bucket, and still known

    tasks.requeue_stale_imports()
    imp.refresh_from_db()
    assert imp.file_key == ""
    with pytest.raises(storage.ObjectNotFound):
        storage.read_bytes(key)
    assert not unsent[1:], "a finished import is not sent again"


@AS_JOB
def test_a_deleted_file_is_forgotten(alice_api, alice, unsent):
    pk = _queue_job(alice_api)
    assert tasks.import_run(pk) == "succeeded"
    assert MemoryImport.objects.get(pk=pk).file_key == ""


# --------------------------------------------------------------- lock order


def _ungranted_locks() -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
        return int(cur.fetchone()[0])


def _memories(records: list[dict[str, Any]]) -> list[NewMemory]:
    parsed = parse_import(raw=None, data=records, fmt="json", tier="long-term")
    return [
        NewMemory(r.tier, r.content, r.metadata, r.created_at, r.external_id)
        for r in parsed.records
    ]


def _create_many(user: User, memories: list[NewMemory]) -> tuple[int, int]:
    result = memory_create_many(
        ctx=Context(Actor("user", str(user.pk))),
        user=user,
        memories=memories,
        all_or_nothing=False,
    )
    return len(result.inserted), len(result.duplicates)


def _import(user: User, records: list[dict[str, Any]]) -> tuple[int, int]:
    imp = import_services.memory_import_start(
        ctx=Context(Actor("user", str(user.pk))),
        user=user,
        tier="long-term",
        fmt="json",
        data=records,
    )
    return imp.imported, imp.skipped_duplicate


def _first_pauses_while_the_second_waits(
    user: User, first: Any, second: Any
) -> dict[str, tuple[int, int]]:
    """Run first(pause) and second() in two threads (own connections): the first
    calls pause() holding its locks; the second starts then, and the first goes
    on once the second waits on a lock. A thread's error fails the test."""
    paused, resume = threading.Event(), threading.Event()
    results: dict[str, tuple[int, int]] = {}
    errors: list[BaseException] = []

    def pause() -> None:
        paused.set()
        assert resume.wait(20)

    def run(name: str, work: Any) -> None:
        try:
            with rls.acting_user(user.pk):  # as the user's import job would
                results[name] = work()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=run, args=("first", lambda: first(pause))),
        threading.Thread(target=run, args=("second", second)),
    ]
    threads[0].start()
    assert paused.wait(20)
    threads[1].start()
    deadline = time.monotonic() + 20
    while _ungranted_locks() == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    resume.set()
    for t in threads:
        t.join(30)
    assert not errors, errors
    return results


@pytest.mark.django_db(transaction=True)
def test_writers_of_overlapping_batches_queue_on_the_quota_instead_of_deadlocking():
    """The first writer holds the quota row after one batch and then inserts what
    the second one inserts too: the second must wait on the quota row before it
    inserts anything, or the two wait on each other (PostgreSQL then aborts one
    with a deadlock error)."""
    user = User.objects.create_user(email="twice@example.com", password="x-long-pw-1")
    memories = _memories(_json_list(6))

    def first(pause: Any) -> tuple[int, int]:
        with transaction.atomic():
            a = _create_many(user, memories[:2])
            pause()
            b = _create_many(user, memories[2:4])
        return a[0] + b[0], a[1] + b[1]

    def second() -> tuple[int, int]:
        with transaction.atomic():
            return _create_many(user, memories[2:])

    results = _first_pauses_while_the_second_waits(user, first, second)
    assert results == {"first": (4, 0), "second": (2, 2)}
    assert MemoryItem.objects.filter(user=user).count() == 6
    assert_usage_is_exact(user)


@pytest.mark.django_db(transaction=True)
@override_settings(IMPORT_BATCH_SIZE=2)
def test_imports_into_two_tiers_lock_every_quota_row_they_need_first(monkeypatch):
    """Two synchronous imports (one transaction of several batches each) whose
    batches take the tiers in opposite orders: without taking all their quota
    rows up front, the second would hold one tier's row while it waits for the
    first (on the user's audit chain lock, held to commit), and the first would
    wait for that row."""
    user = User.objects.create_user(email="tiers@example.com", password="x-long-pw-1")
    records = _json_list(6)
    for n in (0, 1):
        records[n]["tier"] = "permanent"
    pause_after_first_batch: list[Any] = []
    real_create = import_services._create

    def pausing_create(*args: Any, **kwargs: Any) -> Any:
        result = real_create(*args, **kwargs)
        if pause_after_first_batch:  # the first import's first batch
            pause_after_first_batch.pop()()
        return result

    monkeypatch.setattr(import_services, "_create", pausing_create)

    def first(pause: Any) -> tuple[int, int]:
        pause_after_first_batch.append(pause)
        return _import(user, records[:4])  # permanent, then long-term

    def second() -> tuple[int, int]:
        return _import(user, records[4:] + records[:2])  # long-term, then permanent

    results = _first_pauses_while_the_second_waits(user, first, second)
    assert results == {"first": (4, 0), "second": (2, 2)}
    assert MemoryItem.objects.filter(user=user).count() == 6
    assert_usage_is_exact(user)
