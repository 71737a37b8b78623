"""Embedded services: real PostgreSQL+pgvector, Valkey and S3 (SeaweedFS) servers
from PyPI wheels.

With no DATABASE_URL / REDIS_URL / AWS_STORAGE_BUCKET_NAME in the environment,
Kimberly runs against servers it starts itself, with data under ./var/. The
process that starts a server owns it and stops it when it exits; a second command
finds the running server (via its pid file) and reuses it without taking
ownership. Stale pid
files left by a crash are detected (pid gone, or not our server) and removed.
They listen on 127.0.0.1 only and require passwords (S3: an access key pair),
generated once into var/credentials.json (mode 0600); the app uses a
non-superuser PostgreSQL role.

    python -m kimberly.runtime exec -- CMD...   run CMD with the services up
    python -m kimberly.runtime up|down|status    (up: keep running until down)

Modules: common (paths, probes, lock), credentials, postgres, valkey, seaweed,
leases (who starts and stops what), cli.
"""

from kimberly.runtime.common import VAR_DIR, pid_alive
from kimberly.runtime.leases import (
    Service,
    apply_env,
    discovered_env,
    discovered_s3_env,
    embedded_services,
    ensure,
    ensure_local_secret_key,
    external,
    release,
)
from kimberly.runtime.postgres import (
    DB_NAME,
    postgres_port,
    postgres_url,
    start_postgres,
    stop_postgres,
)
from kimberly.runtime.seaweed import seaweed_port, start_seaweed, stop_seaweed
from kimberly.runtime.valkey import start_valkey, stop_valkey, valkey_port, valkey_url

PG_DATA = VAR_DIR / "pg"
VALKEY_DIR = VAR_DIR / "valkey"

__all__ = [
    "DB_NAME",
    "PG_DATA",
    "VALKEY_DIR",
    "VAR_DIR",
    "Service",
    "apply_env",
    "discovered_env",
    "discovered_s3_env",
    "embedded_services",
    "ensure",
    "ensure_local_secret_key",
    "external",
    "pid_alive",
    "postgres_port",
    "postgres_url",
    "release",
    "seaweed_port",
    "start_postgres",
    "start_seaweed",
    "start_valkey",
    "stop_postgres",
    "stop_seaweed",
    "stop_valkey",
    "valkey_port",
    "valkey_url",
]
