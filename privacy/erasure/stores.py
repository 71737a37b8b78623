"""Every store that holds a user's data: how erasure deletes it, how it is probed.

One entry per store. PostgreSQL: every table with a user column, in the order
they are deleted (SQL_TABLES) or kept on purpose (SQL_KEPT); the guard test
compares them with Django's app registry, so a new table without an entry fails
the suite, and the verification probes every table the registry knows, listed
or not. Redis: privacy/erasure/redis_keys.py. Object storage: the user's prefix.
Sessions (django_session rows carry the user id inside their signed data). The
data key: not built yet (issue 12 part 2); its entry says so.

Each erase returns counts; each probe returns what is still found (0 = ok).
Each entry of a receipt: {store, name, deleted, verification: {result, found}}.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import models, transaction

from kimberly import storage
from privacy.erasure.redis_keys import REDIS_KEYS, Subject

Entry = dict[str, Any]


@dataclass(frozen=True)
class Table:
    """A table of user data: `lookup` leads from its rows to the user's id."""

    label: str
    lookup: str
    delete: bool = True  # False: its rows go with their parent's (CASCADE)
    why: str = ""


# In this order: a table goes before those its rows point at with RESTRICT.
SQL_TABLES: tuple[Table, ...] = (
    # A plain column (no FK to the user): Django would not cascade it. Its item
    # FK cascades in the schema (memory migration 0009).
    Table("memory.RetrievalRecord", "user_id", why="plain user_id column"),
    # Items before attachments: MemoryItem.attachment is RESTRICT (a chunk must
    # not lose its document), so the chunks go first.
    Table("memory.MemoryItem", "user_id"),
    Table("memory.MemoryVersion", "item__user_id", delete=False, why="with its item"),
    Table("memory.MemoryEmbedding", "user_id"),
    Table("memory.Attachment", "user_id"),
    Table("memory.MemoryImport", "user_id"),
    Table("memory.MemoryProposal", "user_id"),
    Table("memory.Goal", "user_id"),
    Table("memory.Quota", "user_id"),
    Table("memory.IdempotencyKey", "user_id"),
    Table("memory.MeditationRun", "user_id"),
    Table("memory.ScoreRecord", "run__user_id", delete=False, why="with its run"),
    Table("chat.Message", "user_id"),
    Table(
        "chat.MessageContext", "message__user_id", delete=False, why="with its message"
    ),
    Table("chat.Conversation", "user_id"),
    # Reminders and events point at their task with SET NULL: gone first, no
    # UPDATE of rows about to be deleted.
    Table("agents.Reminder", "user_id"),
    Table("agents.Event", "user_id"),
    Table("agents.AgentTask", "user_id"),
    Table("agents.UserAgentSwitch", "user_id"),
    Table("privacy.DataExport", "user_id", why="its zip goes with the prefix"),
    Table("users.Consent", "user_id"),
    Table("privacy.RetentionPolicy", "user_id", why="the user's own retention values"),
    # Crypto-shredding: without the data key, whatever it sealed is unreadable,
    # in this database, a replica or any backup.
    Table("users.DataKey", "user_id", why="the data key (crypto-shredding)"),
    Table("knox.AuthToken", "user_id"),
    Table("admin.LogEntry", "user_id", why="a staff user's admin actions"),
    Table("users.User_groups", "user_id"),
    Table("users.User_user_permissions", "user_id"),
    Table("users.User", "id", why="the account: email, password hash, settings"),
)

# Tables with a user column that erasure keeps, and why.
SQL_KEPT: dict[str, str] = {
    # Append-only and hash-chained (the database refuses UPDATE/DELETE): the
    # user's chain stays whole, so `audit verify` still accepts it, as
    # tombstones: actions, ids and times, never content (audit/models.py). Once
    # the users row is gone its user_id is a random UUID that names no one.
    "audit.AuditEvent": "audit tombstones: no content; the chain stays verifiable",
    "privacy.Deletion": "the receipt itself (shown after the account is gone)",
    # Where retention cut the user's audit chain: seq and hash, never content;
    # kept with the chain it anchors (append-only, like the events).
    "audit.AuditAnchor": "audit chain anchors: no content; the chain stays verifiable",
}


def _is_user_column(f: Any, user_model: type[models.Model]) -> bool:
    if not getattr(f, "concrete", False):
        return False
    if f.is_relation and (f.many_to_one or f.one_to_one):
        return bool(f.related_model is user_model)
    return bool(getattr(f, "attname", "") == "user_id")


def user_tables() -> set[str]:
    """Labels of every model with a FK/one-to-one to the user model or a user_id
    column, from Django's app registry (auto-created M2M tables included)."""
    user_model = apps.get_model(settings.AUTH_USER_MODEL)
    return {
        m._meta.label
        for m in apps.get_models(include_auto_created=True)
        if any(_is_user_column(f, user_model) for f in m._meta.get_fields())
    }


def _model(label: str) -> type[models.Model]:
    return apps.get_model(label)


def _rows(label: str, lookup: str, user_id: uuid.UUID) -> models.QuerySet[Any]:
    return _model(label)._base_manager.filter(**{lookup: user_id})


def sql_erase(s: Subject) -> dict[str, int]:
    """Delete the user's rows of every table, in order, in one transaction;
    rows deleted per table (cascaded ones counted with their own table)."""
    deleted: dict[str, int] = {t.label: 0 for t in SQL_TABLES}
    with transaction.atomic():
        # Writers that lock the user row (quota claims) wait for us, then find
        # no user; the account is inactive and its tokens are gone anyway.
        list(_rows("users.User", "id", s.user_id).select_for_update())
        for table in SQL_TABLES:
            if not table.delete:
                continue
            _, per_model = _rows(table.label, table.lookup, s.user_id).delete()
            for label, n in per_model.items():
                deleted[label] = deleted.get(label, 0) + n
    return deleted


def _user_lookup(label: str) -> str:
    user_model = apps.get_model(settings.AUTH_USER_MODEL)
    for f in _model(label)._meta.get_fields():
        if _is_user_column(f, user_model):
            return str(getattr(f, "attname", "user_id"))
    raise LookupError(f"{label} has no user column")


def sql_probe(s: Subject) -> dict[str, int]:
    """Rows still holding the user's id, per table: every listed table, and
    every table of the registry with a user column (listed or not)."""
    lookups = {t.label: t.lookup for t in SQL_TABLES}
    for label in user_tables() - lookups.keys() - SQL_KEPT.keys():
        lookups[label] = _user_lookup(label)
    return {
        label: _rows(label, lookup, s.user_id).count()
        for label, lookup in lookups.items()
    }


def _session_keys(s: Subject) -> list[str]:
    # Session data is signed JSON; the user id is inside it, so each is read.
    uid = str(s.user_id)
    return [
        session.session_key
        for session in Session.objects.iterator()
        if str(session.get_decoded().get("_auth_user_id", "")) == uid
    ]


def sessions_erase(s: Subject) -> int:
    """Delete the user's Django sessions (the admin's logins)."""
    return int(Session.objects.filter(session_key__in=_session_keys(s)).delete()[0])


def sessions_probe(s: Subject) -> int:
    return len(_session_keys(s))


def objects_erase(s: Subject) -> int:
    """Delete every object under users/<id>/: attachments, transcripts, imports,
    exports."""
    return storage.delete_prefix(storage.user_prefix(s.user_id))


def objects_probe(s: Subject) -> int:
    return storage.count_prefix(storage.user_prefix(s.user_id))


def redis_erase(s: Subject) -> dict[str, int]:
    """Delete the user's keys and entries of every pattern that holds user data."""
    return {k.prefix: k.erase(s) for k in REDIS_KEYS if k.erase is not None}


def redis_probe(s: Subject) -> dict[str, int]:
    return {k.prefix: k.probe(s) for k in REDIS_KEYS if k.probe is not None}


# The data key (users/keys.py) is a row of users.DataKey, deleted with the
# other tables; the receipt names it on its own. Processes that cached it
# unwrapped forget it within users.keys.KEY_CACHE_SECONDS.
DATA_KEY_NOTE = "destroyed: what it sealed can no longer be opened, backups included"


def audit_tombstones(s: Subject) -> int:
    return int(
        _model("audit.AuditEvent")._base_manager.filter(user_id=s.user_id).count()
    )


def _verification(found: int) -> dict[str, Any]:
    return {"result": "ok" if found == 0 else f"found {found}", "found": found}


def receipt_entries(
    s: Subject,
    *,
    sql: dict[str, int],
    redis: dict[str, int],
    sessions: int,
    objects: int,
) -> list[Entry]:
    """Probe every store and pair what it still holds with what was deleted."""
    entries: list[Entry] = []
    for label, found in sorted(sql_probe(s).items()):
        entries.append(
            {
                "store": "postgresql",
                "name": _model(label)._meta.db_table,
                "deleted": sql.get(label, 0),
                "verification": _verification(found),
            }
        )
    entries.append(
        {
            "store": "postgresql",
            "name": "django_session",
            "deleted": sessions,
            "verification": _verification(sessions_probe(s)),
        }
    )
    for prefix, found in redis_probe(s).items():
        entries.append(
            {
                "store": "redis",
                "name": prefix,
                "deleted": redis.get(prefix, 0),
                "verification": _verification(found),
            }
        )
    entries.append(
        {
            "store": "s3",
            "name": storage.user_prefix(s.user_id),
            "deleted": objects,
            "verification": _verification(objects_probe(s)),
        }
    )
    left = sql_probe(s).get("users.DataKey", 0)
    entries.append(
        {
            "store": "data_key",
            "name": "users_datakey",
            "deleted": sql.get("users.DataKey", 0),
            "verification": {**_verification(left), "note": DATA_KEY_NOTE},
        }
    )
    entries.append(
        {
            "store": "audit",
            "name": "audit_auditevent",
            "deleted": 0,
            "kept": audit_tombstones(s),
            "verification": {"result": "kept", "note": SQL_KEPT["audit.AuditEvent"]},
        }
    )
    return entries
