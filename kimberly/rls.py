"""Row-level security: which users' rows the database shows this connection.

Every table of user data has FORCE ROW LEVEL SECURITY and a policy keyed on two
settings of the connection (kimberly/migrations/0002_row_level_security.py):

    kimberly.user_id   the acting user: only their rows are seen and written
    kimberly.scope     'maintenance': every row (set-wise jobs, operators)

Nothing set (a fresh connection, a request before authentication, a task that
declared nothing) sees and writes no row at all: deny by default. A forgotten
`filter(user=...)` then returns the acting user's rows only, never another's.

Scopes are context managers that set both values and restore the previous ones
on exit, so they nest (maintenance inside a request, a user inside a batch).
Django runs in autocommit: inside a transaction block the values are set with
`is_local` (they end with it, whatever happens); outside, for the session, and
the exit puts the previous ones back. A connection starts with no scope
(connection_created), every request starts with none (RlsMiddleware) and every
task with its own declared scope (`task_scope`).

Why a scope and not a BYPASSRLS role for maintenance: a managed PostgreSQL
without a superuser cannot create BYPASSRLS roles, and a second login role would
need a second connection (and its own pool) in every process that does both.
What we guard against is a missing filter in app code, and against that both
protect the same way: maintenance is entered only by name, in code, with a
reason, and everything else is confined to one user. A session that can run
arbitrary SQL can set the GUC, so this is not a defence against SQL injection
(the ORM is), nor against an operator with the app's password.

Query plans (bench/rls_plans.py): the user B-tree indexes are used as before.
The policy's OR hides it from the planner's equivalence classes, so a query
that filters on its user too is estimated at ~1/60 of its rows (nested loops
where a hash join was), and an unscoped query cannot use the user index.
`@@` and `@>` are not leakproof, so their GIN indexes are not used below the
policy (retrieval's lexical step avoids that GIN index on purpose; a superuser
can mark ts_match_vq LEAKPROOF, which brings it back). Policies written `TO` a
web role as plain `user_id = acting` plus a maintenance role reached with SET
ROLE would plan like the unprotected queries; not done yet.

Session settings assume a connection is one client's at a time: a
transaction-mode pooler (PgBouncer) in front would mix them up.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from django.core.exceptions import ValidationError
from django.db import connection
from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg.pq import TransactionStatus

USER_GUC = "kimberly.user_id"
SCOPE_GUC = "kimberly.scope"
MAINTENANCE = "maintenance"

log = logging.getLogger("kimberly.rls")

P = ParamSpec("P")
R = TypeVar("R")

# One round trip: the previous values (read first: the subquery is a fence) and
# the new ones set. bandit B608 (SQL from strings): only the constant setting
# names are interpolated; the values are parameters.
_SWAP = (
    f"SELECT prev.u, prev.s, set_config('{USER_GUC}', %s, %s), "  # nosec B608
    f"set_config('{SCOPE_GUC}', %s, %s) FROM ("
    f"SELECT current_setting('{USER_GUC}', true) AS u, "
    f"current_setting('{SCOPE_GUC}', true) AS s OFFSET 0) AS prev"
)
_SET = f"SELECT set_config('{USER_GUC}', %s, %s), set_config('{SCOPE_GUC}', %s, %s)"


def _swap(user_id: str, scope: str, *, using: Any = None) -> tuple[str, str]:
    conn = using or connection
    local = conn.in_atomic_block
    with conn.cursor() as cur:
        cur.execute(_SWAP, [user_id, local, scope, local])
        prev_user, prev_scope, *_ = cur.fetchone()
    return prev_user or "", prev_scope or ""


def _set(user_id: str, scope: str, *, using: Any = None) -> None:
    conn = using or connection
    local = conn.in_atomic_block
    with conn.cursor() as cur:
        cur.execute(_SET, [user_id, local, scope, local])


def _aborted(conn: Any = None) -> bool:
    """The transaction failed: no statement runs until its rollback, which also
    takes back a transaction-local setting (so nothing is left to restore)."""
    raw = (conn or connection).connection
    return raw is not None and raw.info.transaction_status == TransactionStatus.INERROR


@contextmanager
def _scope(user_id: str, scope: str, *, using: Any = None) -> Iterator[None]:
    conn = using or connection
    prev = _swap(user_id, scope, using=conn)
    try:
        yield
    finally:
        # a closed connection starts clean anyway; an aborted transaction would
        # turn the caller's real error into TransactionManagementError
        if conn.connection is not None and not _aborted(conn):
            _set(*prev, using=conn)


def acting_user(user_id: uuid.UUID | str | None) -> Any:
    """Only `user_id`'s rows (None: no row at all, e.g. an owner that is gone)."""
    return _scope(str(user_id) if user_id else "", "")


def maintenance(reason: str, *, using: Any = None) -> Any:
    """Every user's rows: set-wise jobs and operators only, and say why.
    `using`: another connection than the default one (e.g. a scratch database's)."""
    if not reason:
        raise ValueError("a maintenance scope needs a reason")
    log.debug("maintenance scope: %s", reason)
    return _scope("", MAINTENANCE, using=using)


def no_scope() -> Any:
    """No row at all (the start of every request and task)."""
    return _scope("", "")


def bind_user(user_id: uuid.UUID | str) -> None:
    """The acting user for the rest of the enclosing scope (a request once its
    token is known: RlsMiddleware's frame restores what was before)."""
    _set(str(user_id), "")


def current() -> tuple[str, str]:
    """(user_id, scope) as the database sees them now ('' when unset)."""
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT current_setting('{USER_GUC}', true), "
            f"current_setting('{SCOPE_GUC}', true)"
        )
        user_id, scope = cur.fetchone()
    return user_id or "", scope or ""


def on_connection_created(connection: BaseDatabaseWrapper, **_: Any) -> None:
    """A new connection starts with no scope (whatever a pooler left on it)."""
    if connection.vendor == "postgresql":
        _set("", "", using=connection)


# --- Celery tasks -------------------------------------------------------------
# Each task declares how it runs, right under @shared_task; a guard test fails
# for a registered task without a declaration.


def task_scope(
    *,
    maintenance: str | None = None,
    owner: Callable[..., Any] | None = None,
    no_rows: str | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Run the task under `maintenance(reason)`; or as the user `owner(*args,
    **kwargs)` names (looked up under maintenance; None: no row); or, for a
    task that reads no table (`no_rows=reason`), under no scope at all."""
    if sum(x is not None for x in (maintenance, owner, no_rows)) != 1:
        raise TypeError("task_scope takes one of maintenance, owner or no_rows")

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            # Whatever the connection had before (a reused one), the task
            # starts from nothing, and leaves it as it found it.
            with no_scope():
                if maintenance is not None:
                    with _maintenance(maintenance):
                        return fn(*args, **kwargs)
                if owner is None:
                    return fn(*args, **kwargs)
                with _maintenance(f"{fn.__name__}: find the owner"):
                    user_id = owner(*args, **kwargs)
                with acting_user(user_id):
                    return fn(*args, **kwargs)

        run.rls_scope = (  # type: ignore[attr-defined]
            f"maintenance: {maintenance}" if maintenance else no_rows or "owner"
        )
        return run

    return decorate


_maintenance = maintenance


def owner_of(label: str, arg: str, *, field: str = "user_id") -> Callable[..., Any]:
    """An `owner` for task_scope: the user of the `label` row whose pk is the
    task's argument `arg` (by name, or the first positional one)."""

    def lookup(*args: Any, **kwargs: Any) -> Any:
        from django.apps import apps

        pk = kwargs[arg] if arg in kwargs else _positional(args)
        rows = apps.get_model(label)._base_manager.filter(pk=pk)
        try:
            return rows.values_list(field, flat=True).first()
        except (ValueError, ValidationError):
            return None  # a malformed id: the task itself says so

    return lookup


def _positional(args: tuple[Any, ...]) -> Any:
    # bind=True tasks get the task itself first.
    from celery import Task

    rest = args[1:] if args and isinstance(args[0], Task) else args
    return rest[0]
