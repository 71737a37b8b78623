"""`python -m kimberly.runtime exec|up|down|status`."""

from __future__ import annotations

import signal
import subprocess
import sys

from kimberly.runtime import leases, postgres, seaweed, valkey

USAGE = """usage: python -m kimberly.runtime COMMAND

    exec -- CMD...   run CMD with the embedded servers up
    up               start them and keep them running until `down`
    down             stop them
    status           print their URLs, with credentials (var/credentials.json)
"""


def _exec(cmd: list[str]) -> int:
    with leases.embedded_services(quiet=False):
        child = subprocess.Popen(cmd)

        def forward(signum: int, _frame: object) -> None:
            # Ctrl-C reaches the child through the terminal's process group; we
            # only have to wait for it. SIGTERM (from a supervisor) is forwarded.
            if signum == signal.SIGTERM:
                child.send_signal(signum)

        signal.signal(signal.SIGINT, forward)
        signal.signal(signal.SIGTERM, forward)
        return child.wait()


def _status() -> int:
    env = leases.discovered_env()
    legacy = " (trust auth from older code: the next command upgrades it)"
    pg = "not running"
    if postgres.postgres_port() is not None:
        pg = env.get("DATABASE_URL", "running" + legacy)
    print(f"postgres: {pg}")
    if "DATABASE_ADMIN_URL" in env:
        print(f"postgres (superuser, bootstrap only): {env['DATABASE_ADMIN_URL']}")
    vk = "not running"
    if valkey.valkey_port() is not None:
        vk = env.get("REDIS_URL", "running" + legacy)
    print(f"valkey: {vk}")
    s3 = "not running"
    if seaweed.seaweed_port() is not None:
        s3 = "running (credentials of older code: the next command adds them)"
        if "AWS_S3_ENDPOINT_URL" in env:
            s3 = (
                f"{env['AWS_S3_ENDPOINT_URL']} bucket={env['AWS_STORAGE_BUCKET_NAME']} "
                f"access_key={env['AWS_ACCESS_KEY_ID']} "
                f"secret_key={env['AWS_SECRET_ACCESS_KEY']}"
            )
    print(f"seaweedfs (S3): {s3}")
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"exec", "up", "down", "status"}:
        print(USAGE, file=sys.stderr)
        return 2
    if argv[0] == "exec":
        cmd = argv[2:] if argv[1:2] == ["--"] else argv[1:]
        return _exec(cmd)
    if argv[0] == "up":
        for svc in leases.ensure(auto_stop=False):
            print(f"{svc.name}: {leases.redact(svc.url)}  (with credentials: status)")
        return 0
    if argv[0] == "down":
        leases.stop_all()
        return 0
    return _status()
