"""Row-level security (issue 12 part 6): a query that forgets its user filter
still sees only the acting user's rows, in a real request, in raw SQL as the app
role, and for every table of user data there is (guard tests)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.apps import apps
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from psycopg import sql

from chat.models import Conversation
from kimberly import rls
from kimberly.celery import app as celery_app
from kimberly.management.operator import OperatorCommand
from kimberly.rls_schema import EXEMPT, POLICY, SHARED_POLICY
from memory.models import Goal, MemoryItem
from memory.tests.factories import memory_for
from privacy.erasure.stores import user_tables

pytestmark = pytest.mark.django_db


def _data_for(user: Any) -> None:
    memory_for(user, f"{user.email} likes tea", protected=True)  # a version too
    Goal.objects.create(user=user, text=f"{user.email}'s goal")
    Conversation.objects.create(user=user, title="chat")


# --- (1) an unscoped ORM query inside alice's real request ---------------------


@pytest.mark.urls("tests.rls_probe_urls")
def test_an_unscoped_query_in_alices_request_sees_only_alices_rows(
    alice, bob, alice_api
):
    _data_for(alice)
    _data_for(bob)
    assert MemoryItem.objects.count() == 2  # the test itself: maintenance

    body = alice_api.get("/v1/test/unscoped").json()

    me = str(alice.pk)
    assert body == {
        "items": [me],
        "versions": [me],
        "goals": [me],
        "conversations": 1,
        "users": [me],
    }
    # The request's frame restored the test's scope.
    assert rls.current() == ("", rls.MAINTENANCE)


@pytest.mark.urls("tests.rls_probe_urls")
def test_an_anonymous_request_sees_no_row(alice, api):
    _data_for(alice)
    body = api.get("/v1/test/unscoped").json()
    assert body == {
        "items": [],
        "versions": [],
        "goals": [],
        "conversations": 0,
        "users": [],
    }


@pytest.mark.urls("tests.rls_probe_urls")
def test_a_script_name_chooses_no_scope(alice, bob, api):
    """A proxy (or a forwarded header) may set SCRIPT_NAME: `/admin` in front of
    an API path must not make it the admin's maintenance scope."""
    _data_for(alice)
    _data_for(bob)
    body = api.get("/v1/test/unscoped", SCRIPT_NAME="/admin").json()
    assert body["users"] == [] and body["items"] == []


def _system_default() -> Any:
    from privacy.retention.models import RetentionPolicy

    return RetentionPolicy.objects.create(user=None, data_type="chat_messages", days=90)


def test_system_retention_defaults_are_read_by_users_but_never_written(alice):
    from privacy.retention.models import RetentionPolicy

    default = _system_default()
    with rls.acting_user(alice.pk):
        assert RetentionPolicy.objects.filter(user=None).count() == 1, "readable"
        assert RetentionPolicy.objects.filter(user=None).delete()[0] == 0
        assert RetentionPolicy.objects.filter(user=None).update(days=1) == 0
        with pytest.raises(DatabaseError), transaction.atomic():
            RetentionPolicy.objects.create(user=None, data_type="exports", days=1)
    default.refresh_from_db()
    assert default.days == 90 and default.user_id is None


def test_a_database_error_inside_a_scope_stays_that_error(alice):
    from django.db import IntegrityError

    _system_default()
    with (
        pytest.raises(IntegrityError),
        transaction.atomic(),
        rls.maintenance("test: a duplicate system default"),
    ):
        _system_default()


@pytest.mark.urls("tests.rls_probe_urls")
def test_a_bad_token_binds_no_user(alice, api):
    _data_for(alice)
    api.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    assert api.get("/v1/test/unscoped").status_code == 401
    assert rls.current() == ("", rls.MAINTENANCE)


# --- (2) raw SQL as the app role ------------------------------------------------


def _app_role_connection() -> psycopg.Connection[Any]:
    s = connection.settings_dict
    assert s["USER"] == "kimberly", "the app role, never a superuser"
    return psycopg.connect(
        host=s["HOST"],
        port=s["PORT"],
        dbname=s["NAME"],
        user=s["USER"],
        password=s["PASSWORD"],
        autocommit=True,
    )


def _owners(conn: psycopg.Connection[Any], table: str) -> list[str]:
    q = sql.SQL("SELECT user_id::text FROM {} ORDER BY 1").format(sql.Identifier(table))
    return [r[0] for r in conn.execute(q).fetchall()]


@pytest.mark.django_db(transaction=True)
def test_raw_sql_as_the_app_role(alice, bob):
    _data_for(alice)
    _data_for(bob)
    me = str(alice.pk)
    with _app_role_connection() as conn:
        role = conn.execute(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert role == (False, False)
        # Nothing set: no row of any user.
        for table in ("memory_memoryitem", "memory_goal", "chat_conversation"):
            assert _owners(conn, table) == []
        assert conn.execute("SELECT count(*) FROM users_user").fetchone() == (0,)

        conn.execute("SELECT set_config('kimberly.user_id', %s, false)", [me])
        for table in ("memory_memoryitem", "memory_goal", "chat_conversation"):
            assert _owners(conn, table) == [me]
        versions = conn.execute("SELECT count(*) FROM memory_memoryversion").fetchone()
        assert versions == (1,)
        # An UPDATE or DELETE cannot reach bob's rows either.
        assert (
            conn.execute(
                "DELETE FROM memory_goal WHERE user_id = %s", [bob.pk]
            ).rowcount
            == 0
        )

        # A row for bob written under alice's scope: refused by WITH CHECK.
        with pytest.raises(
            psycopg.errors.InsufficientPrivilege, match="row-level security"
        ):
            conn.execute(
                """INSERT INTO memory_goal
                   SELECT (jsonb_populate_record(NULL::memory_goal, to_jsonb(g)
                           || jsonb_build_object('id', g.id + 1000, 'user_id', %s::text))).*
                     FROM memory_goal g""",
                [str(bob.pk)],
            )
        # And moving her own row to bob: refused too.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE memory_goal SET user_id = %s", [bob.pk])

        conn.execute("SELECT set_config('kimberly.scope', 'maintenance', false)")
        conn.execute("SELECT set_config('kimberly.user_id', '', false)")
        assert sorted(_owners(conn, "memory_goal")) == sorted([me, str(bob.pk)])


def test_the_orm_cannot_write_a_row_for_another_user(alice, bob):
    with rls.acting_user(alice.pk), pytest.raises(DatabaseError), transaction.atomic():
        Goal.objects.create(user=bob, text="not hers to write")


# --- scopes: nesting, transactions, fresh connections ------------------------------


def test_scopes_nest_and_restore(alice, bob):
    assert rls.current() == ("", rls.MAINTENANCE)
    with rls.acting_user(alice.pk):
        assert rls.current() == (str(alice.pk), "")
        with rls.maintenance("nested"):
            assert rls.current() == ("", rls.MAINTENANCE)
            with rls.acting_user(bob.pk):
                assert rls.current() == (str(bob.pk), "")
            assert rls.current() == ("", rls.MAINTENANCE)
        assert rls.current() == (str(alice.pk), "")
    assert rls.current() == ("", rls.MAINTENANCE)


def test_a_maintenance_scope_needs_a_reason():
    with pytest.raises(ValueError):
        rls.maintenance("")


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_scopes_last_for_the_session_and_restore(alice):
    # Autocommit: each statement is its own transaction, the scope outlives them.
    with rls.acting_user(alice.pk):
        assert rls.current() == (str(alice.pk), "")
        assert rls.current() == (str(alice.pk), "")
        with transaction.atomic():
            with rls.no_scope():
                assert rls.current() == ("", "")
            assert rls.current() == (str(alice.pk), "")
        assert rls.current() == (str(alice.pk), "")
    assert rls.current() == ("", rls.MAINTENANCE)


def test_another_connection_starts_with_no_scope(alice):
    seen: list[tuple[str, str]] = []

    def other() -> None:
        try:
            seen.append(rls.current())
        finally:
            connection.close()

    thread = threading.Thread(target=other)
    thread.start()
    thread.join(30)
    assert seen == [("", "")]


@pytest.mark.urls("tests.rls_probe_urls")
@pytest.mark.django_db(transaction=True)
def test_a_scope_left_on_a_reused_connection_reaches_no_request_or_task(
    alice, bob, api
):
    _data_for(alice)
    seen: list[int] = []

    @rls.task_scope(no_rows="a probe")
    def probe() -> None:
        seen.append(Goal.objects.count())

    # As if some code path had set a scope and never restored it.
    rls.bind_user(alice.pk)
    try:
        assert Goal.objects.count() == 1
        assert api.get("/v1/test/unscoped").json()["goals"] == []
        probe()
        assert seen == [0]
    finally:
        with connection.cursor() as cur:
            cur.execute("SELECT set_config('kimberly.scope', 'maintenance', false)")


# --- tasks ---------------------------------------------------------------------


def test_a_task_runs_as_the_owner_of_its_row(alice, bob):
    from memory.tasks import meditate_user

    seen: list[tuple[str, str]] = []

    @rls.task_scope(owner=rls.owner_of("memory.Goal", "goal_id"))
    def probe(goal_id: int) -> None:
        seen.append(rls.current())
        seen.append((str(Goal.objects.count()), ""))

    goal = Goal.objects.create(user=alice, text="x")
    Goal.objects.create(user=bob, text="y")
    probe(goal.pk)
    probe(goal_id=10**9)  # gone: no row at all
    assert seen == [(str(alice.pk), ""), ("1", ""), ("", ""), ("0", "")]
    assert rls.current() == ("", rls.MAINTENANCE)
    assert getattr(meditate_user.run, "rls_scope", None) == "owner"


# --- (3) guards ------------------------------------------------------------------


def _label(m: Any) -> str:
    return str(m._meta.label)


def user_data_models() -> set[str]:
    """Tables of user data: every table with a user column, the users table, and
    every table whose rows belong to a row of those (a FK, no user column)."""
    owned = user_tables() | {settings.AUTH_USER_MODEL}
    children = {
        _label(m)
        for m in apps.get_models(include_auto_created=True)
        for f in m._meta.get_fields()
        if getattr(f, "concrete", False)
        and f.is_relation
        and (f.many_to_one or f.one_to_one)
        and _label(f.related_model) in owned
    }
    return owned | children


def test_every_table_of_user_data_has_forced_row_level_security():
    assert {"memory.MemoryVersion", "chat.MessageContext"} <= user_data_models()
    with connection.cursor() as cur:
        cur.execute(
            """SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
                      p.polcmd, p.polpermissive,
                      pg_get_expr(p.polqual, p.polrelid),
                      pg_get_expr(p.polwithcheck, p.polrelid)
                 FROM pg_class c
                 LEFT JOIN pg_policy p ON p.polrelid = c.oid AND p.polname = %s
                WHERE c.relkind = 'r'""",
            [POLICY],
        )
        found = {row[0]: row[1:] for row in cur.fetchall()}
        cur.execute(
            "SELECT c.relname, count(*) FROM pg_policy p "
            "JOIN pg_class c ON c.oid = p.polrelid GROUP BY 1"
        )
        policies = dict(cur.fetchall())
        cur.execute(
            "SELECT c.relname FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid"
            " WHERE p.polname = %s AND p.polcmd = 'r'"
            " AND pg_get_expr(p.polqual, p.polrelid) LIKE '%%IS NULL)'",
            [SHARED_POLICY],
        )
        shared = {row[0] for row in cur.fetchall()}
    missing = []
    for label in sorted(user_data_models() - EXEMPT.keys()):
        table = apps.get_model(label)._meta.db_table
        enabled, forced, cmd, permissive, using, check = found[table]
        ok = (
            enabled
            and forced
            and cmd == "*"
            and permissive
            and using == check
            and "kimberly.scope" in using
            and ("kimberly.user_id" in using or "EXISTS" in using)
            # another permissive policy would widen it; the one allowed is
            # shared_when_null's FOR SELECT of rows of no user (read, never written)
            and policies.get(table) == 1 + (table in shared)
        )
        if not ok:
            missing.append(table)
    assert missing == [], "add RowLevelSecurity(<table>) in a migration, or EXEMPT"


def test_exemptions_name_real_tables_and_say_why():
    for label, why in EXEMPT.items():
        apps.get_model(label)
        assert why


def test_every_task_declares_its_scope():
    celery_app.loader.import_default_modules()
    undeclared = [
        name
        for name, task in celery_app.tasks.items()
        if not name.startswith("celery.") and not getattr(task.run, "rls_scope", None)
    ]
    assert undeclared == [], "decorate with @rls.task_scope(...)"


def test_every_management_command_of_the_project_runs_under_maintenance():
    from django.core.management import find_commands, load_command_class

    from kimberly.management.commands import migrate

    # the project's own apps: packages at the top of the repository (not the
    # venv's, which may live inside it too)
    ours = [
        c
        for c in apps.get_app_configs()
        if Path(c.path).parent == Path(settings.BASE_DIR)
    ]
    plain = []
    for config in ours:
        for name in find_commands(str(Path(config.path) / "management")):
            cmd = type(load_command_class(config.name, name))
            if (
                cmd is not migrate.Command
                and not issubclass(cmd, OperatorCommand)
                and not getattr(cmd, "rls_no_rows", "")
            ):
                plain.append(f"{config.name}:{name}")
    assert "memory" in {c.name for c in ours}
    assert plain == []
