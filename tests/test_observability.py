from __future__ import annotations

import json
import logging

import pytest
from celery.schedules import crontab
from django_celery_beat.models import PeriodicTask
from pythonjsonlogger.json import JsonFormatter

from kimberly.beat import SeededDatabaseScheduler
from kimberly.celery import app as celery_app
from kimberly.logging import ContextFilter

pytestmark = pytest.mark.django_db


def test_metrics_endpoint_exposes_request_metrics(api):
    api.get("/v1/health")
    resp = api.get("/metrics")
    assert resp.status_code == 200
    text = resp.content.decode()
    assert "django_http_requests_total_by_view_transport_method_total" in text
    assert 'view="health"' in text
    assert (
        "django_db_execute_total" in text or "django_db_new_connections_total" in text
    )


def test_logs_are_json_with_request_id_and_no_secrets(api, caplog):
    caplog.set_level(logging.INFO, logger="kimberly.access")
    password = "a-long-enough-passphrase-42"
    resp = api.post(
        "/v1/signup",
        {"email": "log@example.com", "password": password},
        format="json",
        HTTP_X_REQUEST_ID="trace-abcdef01",
    )
    token = resp.json()["token"]
    records = [r for r in caplog.records if r.name == "kimberly.access"]
    assert records, "each request is logged"
    record = records[-1]
    ContextFilter().filter(record)
    line = JsonFormatter("%(message)s %(request_id)s %(path)s %(status)s").format(
        record
    )
    payload = json.loads(line)
    assert payload["request_id"] == "trace-abcdef01"
    assert payload["path"] == "/v1/signup"
    assert payload["status"] == 201
    assert password not in caplog.text and token not in caplog.text


@pytest.mark.django_db(transaction=True)  # the scheduler closes DB connections
def test_beat_schedule_from_settings_is_synced_into_the_database():
    SeededDatabaseScheduler(app=celery_app)
    task = PeriodicTask.objects.get(name="purge-expired-auth-tokens")
    assert task.task == "users.tasks.purge_expired_tokens"
    assert task.crontab is not None
    assert (task.crontab.minute, task.crontab.hour) == ("17", "3")
    nightly = PeriodicTask.objects.get(task="memory.tasks.meditate_all")
    assert (nightly.crontab.minute, nightly.crontab.hour) == ("0", "2")


@pytest.mark.django_db(transaction=True)
def test_an_admin_edit_of_the_schedule_survives_a_restart_until_settings_change(
    settings,
):
    from django_celery_beat.models import CrontabSchedule

    SeededDatabaseScheduler(app=celery_app)
    nightly = PeriodicTask.objects.get(task="memory.tasks.meditate_all")
    # the admin moves the nightly run to 03:30
    nightly.crontab = CrontabSchedule.objects.create(minute="30", hour="3")
    nightly.save()
    SeededDatabaseScheduler(app=celery_app)  # beat restarts
    nightly.refresh_from_db()
    assert (nightly.crontab.minute, nightly.crontab.hour) == ("30", "3")
    # the operator changes CRON_MEDITATION: the new value wins at the next start
    original = celery_app.conf.beat_schedule
    schedule = dict(settings.CELERY_BEAT_SCHEDULE)
    entry = dict(schedule[nightly.name])
    entry["schedule"] = crontab(minute="15", hour="1")
    schedule[nightly.name] = entry
    settings.CELERY_BEAT_SCHEDULE = schedule
    celery_app.conf.beat_schedule = schedule
    try:
        SeededDatabaseScheduler(app=celery_app)
    finally:
        celery_app.conf.beat_schedule = original
    nightly.refresh_from_db()
    assert (nightly.crontab.minute, nightly.crontab.hour) == ("15", "1")


@pytest.mark.django_db(transaction=True)
def test_a_seeded_entry_that_left_the_settings_is_dropped_but_others_stay():
    from kimberly.beat import SEED_PREFIX

    SeededDatabaseScheduler(app=celery_app)
    gone = PeriodicTask.objects.get(name="purge-expired-auth-tokens")
    gone.pk, gone.name, gone.task = None, "prune-retrieval-records", "memory.tasks.x"
    gone.save()  # what an older release seeded
    own = PeriodicTask.objects.create(
        name="an operator's own",
        task="users.tasks.purge_expired_tokens",
        interval=gone.interval,
        crontab=gone.crontab,
        description="mine",
    )
    assert gone.description.startswith(SEED_PREFIX)
    scheduler = SeededDatabaseScheduler(app=celery_app)
    assert not PeriodicTask.objects.filter(name="prune-retrieval-records").exists()
    assert PeriodicTask.objects.filter(pk=own.pk).exists()
    assert "prune-retrieval-records" not in scheduler.schedule
    # (django-celery-beat loads only the crontab rows due around this hour)
    assert "flush-retrieval-log" in scheduler.schedule


def test_every_periodic_task_can_be_published_to_the_real_broker():
    """What beat does on schedule: a task whose options Celery rejects never runs."""
    from django.conf import settings

    import agents.tasks  # noqa: F401
    import backups.tasks  # noqa: F401
    import memory.tasks  # noqa: F401
    import privacy.tasks  # noqa: F401
    import users.tasks  # noqa: F401

    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        task = celery_app.tasks[str(entry["task"])]
        result = task.apply_async()
        assert result.id, name
    celery_app.control.purge()  # leave nothing queued for other tests


def test_no_task_may_run_longer_than_the_deployments_task_limits(settings):
    from kimberly.celery import app

    app.loader.import_default_modules()
    tasks = {n: t for n, t in app.tasks.items() if not n.startswith("celery.")}
    assert "memory.tasks.meditate_batch" in tasks
    too_long = {
        name: (task.time_limit, task.soft_time_limit)
        for name, task in tasks.items()
        if (task.time_limit or 0) > settings.CELERY_TASK_TIME_LIMIT
        or (task.soft_time_limit or 0) > settings.CELERY_TASK_SOFT_TIME_LIMIT
    }
    assert too_long == {}
