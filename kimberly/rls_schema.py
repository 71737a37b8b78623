"""Row-level-security policies in migrations: one line per table.

    RowLevelSecurity("memory_goal")                              # its user_id
    RowLevelSecurity("users_user", column="id")                  # the user itself
    RowLevelSecurity("memory_memoryversion", parent=("memory_memoryitem", "item_id"))
    RowLevelSecurity("privacy_retentionpolicy", shared_when_null=True)  # defaults

Each enables and FORCEs row-level security (the app role owns its tables, and an
owner is exempt unless forced) and creates the policy `kimberly_rls` for every
command, with the same rule for what is seen (USING) and what may be written
(WITH CHECK): the maintenance scope, or the acting user's rows (kimberly/rls.py).
A child table without a user column is seen through its parent row, which is
itself under row-level security. With `shared_when_null`, rows without a user
(system-wide defaults) are seen by everyone and written under maintenance only.

tests/test_rls.py fails for a table of user data (privacy.erasure.stores.
user_tables(), the users table and their children) without a policy, unless
EXEMPT below names it with the reason.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import ProjectState

from kimberly.rls import MAINTENANCE, SCOPE_GUC, USER_GUC

POLICY = "kimberly_rls"
SHARED_POLICY = "kimberly_rls_shared"  # FOR SELECT: rows of no user (shared_when_null)
IS_MAINTENANCE = f"current_setting('{SCOPE_GUC}', true) = '{MAINTENANCE}'"
ACTING_USER = f"NULLIF(current_setting('{USER_GUC}', true), '')::uuid"

# Model labels of user data deliberately left without row-level security, and why.
EXEMPT: dict[str, str] = {}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def policy_rule(
    table: str, *, column: str = "user_id", parent: tuple[str, str] | None = None
) -> str:
    """The policy's condition: maintenance, or the acting user's row."""
    if parent:
        parent_table, fk = parent
        # bandit B608 (SQL from strings): table and column names written in
        # migrations, quoted as identifiers; no user input reaches them.
        own = (
            f"EXISTS (SELECT 1 FROM {_quote(parent_table)} p "  # nosec B608
            f"WHERE p.id = {_quote(table)}.{_quote(fk)})"
        )
    else:
        own = f"{_quote(column)} = {ACTING_USER}"
    return f"{IS_MAINTENANCE} OR {own}"


class RowLevelSecurity(migrations.operations.base.Operation):
    """Put `table` under row-level security keyed on the acting user."""

    reversible = True
    reduces_to_sql = True

    def __init__(
        self,
        table: str,
        *,
        column: str = "user_id",
        parent: tuple[str, str] | None = None,
        shared_when_null: bool = False,
    ) -> None:
        self.table, self.column, self.parent = table, column, parent
        self.shared_when_null = shared_when_null

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        kwargs: dict[str, Any] = {}
        if self.column != "user_id":
            kwargs["column"] = self.column
        if self.parent:
            kwargs["parent"] = self.parent
        if self.shared_when_null:
            kwargs["shared_when_null"] = True
        return (self.__class__.__qualname__, [self.table], kwargs)

    def state_forwards(self, app_label: str, state: ProjectState) -> None:
        pass  # no model state: policies live only in the database

    def database_forwards(
        self,
        app_label: str,
        schema_editor: BaseDatabaseSchemaEditor,
        from_state: ProjectState,
        to_state: ProjectState,
    ) -> None:
        t = _quote(self.table)
        rule = policy_rule(self.table, column=self.column, parent=self.parent)
        statements = [
            f"ALTER TABLE {t} ENABLE ROW LEVEL SECURITY",
            f"ALTER TABLE {t} FORCE ROW LEVEL SECURITY",
            f"DROP POLICY IF EXISTS {POLICY} ON {t}",
            f"DROP POLICY IF EXISTS {SHARED_POLICY} ON {t}",
            f"CREATE POLICY {POLICY} ON {t} USING ({rule}) WITH CHECK ({rule})",
        ]
        if self.shared_when_null:
            # Rows of no user (system defaults) are read by everyone, and only
            # read: a second policy FOR SELECT alone, so UPDATE and DELETE still
            # see only the acting user's rows (a USING that admitted them would
            # let any user delete or take over a system row).
            statements.append(
                f"CREATE POLICY {SHARED_POLICY} ON {t} FOR SELECT "
                f"USING ({_quote(self.column)} IS NULL)"
            )
        for sql in statements:
            schema_editor.execute(sql)

    def database_backwards(
        self,
        app_label: str,
        schema_editor: BaseDatabaseSchemaEditor,
        from_state: ProjectState,
        to_state: ProjectState,
    ) -> None:
        t = _quote(self.table)
        for sql in (
            f"DROP POLICY IF EXISTS {POLICY} ON {t}",
            f"DROP POLICY IF EXISTS {SHARED_POLICY} ON {t}",
            f"ALTER TABLE {t} NO FORCE ROW LEVEL SECURITY",
            f"ALTER TABLE {t} DISABLE ROW LEVEL SECURITY",
        ):
            schema_editor.execute(sql)

    def describe(self) -> str:
        return f"Row-level security on {self.table}"
