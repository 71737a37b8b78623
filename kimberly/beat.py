"""Celery beat scheduler: settings seed the schedule, the Django admin owns it.

django-celery-beat's DatabaseScheduler writes every CELERY_BEAT_SCHEDULE entry
over its database row each time beat starts, so an admin's edit (SPEC §2.3:
the nightly schedule is editable in the admin) was lost on the next restart.
Here an entry from settings is written only when it is new or when its value in
settings changed since it was last written (a new CRON_* value still applies);
otherwise the row, and any admin edit of it, is left alone. The value last
written is kept as a fingerprint in the row's description. A row seeded from
settings whose entry has left them (its task renamed or gone) is deleted at
start, so beat never sends a task no worker knows.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler

logger = logging.getLogger(__name__)

SEED_PREFIX = "seeded from settings: "


def seed_fingerprint(entry: dict[str, Any]) -> str:
    """A stable digest of one CELERY_BEAT_SCHEDULE entry."""
    raw = json.dumps(entry, sort_keys=True, default=repr)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


class SeededDatabaseScheduler(DatabaseScheduler):
    def setup_schedule(self) -> None:
        super().setup_schedule()
        keep = set(self.app.conf.beat_schedule) | {"celery.backend_cleanup"}
        stale = PeriodicTask.objects.filter(
            description__startswith=SEED_PREFIX
        ).exclude(name__in=keep)
        for name in stale.values_list("name", flat=True):
            logger.info("beat: dropping %s, no longer in the settings", name)
        stale.delete()  # its post_delete signal tells beat to read the table again

    def update_from_dict(self, mapping: dict[str, Any]) -> None:
        entries = {}
        for name, fields in mapping.items():
            seed = SEED_PREFIX + seed_fingerprint(fields)
            row = PeriodicTask.objects.filter(name=name).only("description").first()
            if row is not None and row.description == seed:
                continue  # as seeded, or edited in the admin since: leave it
            try:
                entry = self.Entry.from_entry(name, app=self.app, **fields)
            except Exception:
                logger.exception("beat: could not write schedule entry %s", name)
                continue  # not marked seeded, so the next start tries again
            PeriodicTask.objects.filter(name=name).update(description=seed)
            if entry.model.enabled:
                entries[name] = entry
        self.schedule.update(entries)
