"""The embedded SeaweedFS's internal ports (master, volume, filer, their gRPC) as
another local user sees them: nothing to read or write without the keys, while S3
with the access key pair works (signed URLs: tests/test_storage.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import botocore.exceptions
import pytest

from kimberly import runtime
from kimberly.runtime import common, credentials, seaweed, seaweed_security

REFUSED = {401, 403, 404}
SECRET = b"private words"


def _http(
    method: str, url: str, data: bytes | None = None, **headers: str
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _jwt(key: str, **claims: object) -> str:
    """An HS256 token shaped like SeaweedFS's own (exp; a volume's names the fid)."""

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    head = b64(b'{"alg":"HS256","typ":"JWT"}')
    body = b64(json.dumps({**claims, "exp": int(time.time()) + 60}).encode())
    sig = hmac.new(key.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def _weed(home: Path, *args: str, config: Path | None = None, stdin: str = "") -> str:
    """A weed tool run from `home` (also its HOME: no security.toml there), with the
    owner's -config_dir or, config=None, as a local user without the keys would."""
    home.mkdir(exist_ok=True)
    cmd = [str(seaweed.weed_binary())]
    if config is not None:
        cmd.append(f"-config_dir={config}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEED_")}
    run = subprocess.run(
        [*cmd, *args],
        cwd=home,
        env={**env, "HOME": str(home)},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return run.stdout + run.stderr


def _grpc_answers(port: int, tls: Path | None, *, certificate: bool = False) -> bool:
    """True when a client gets the HTTP/2 SETTINGS frame a gRPC server sends first:
    in clear text (tls=None, as weed's tools speak without security.toml), or over
    TLS trusting the CA, presenting the node certificate only with `certificate`."""
    try:
        with socket.create_connection((common.HOST, port), timeout=5) as raw:
            conn: socket.socket = raw
            if tls is not None:
                ctx = ssl.create_default_context(cafile=tls / "ca.crt")
                ctx.set_alpn_protocols(["h2"])
                if certificate:
                    ctx.load_cert_chain(tls / "node.crt", tls / "node.key")
                conn = ctx.wrap_socket(raw, server_hostname=common.HOST)
            conn.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes(9))
            frame = conn.recv(9)
    except (ssl.SSLError, OSError):
        return False
    return len(frame) == 9 and frame[3] == 0x04


@pytest.fixture
def weed(scratch_s3, monkeypatch):
    """The embedded S3 alone, one object in it; a WEED_* key in the caller's
    environment (which would override security.toml) must not reach weed."""
    monkeypatch.setenv("WEED_JWT_SIGNING_READ_KEY", "known-to-the-caller")
    runtime.ensure(auto_stop=False)
    ports = json.loads((scratch_s3 / "seaweed" / "ports.json").read_text())
    creds = credentials.load()
    assert creds is not None
    s3 = seaweed.client(ports["s3"], creds)
    s3.put_object(Bucket="kimberly", Key="users/victim/t.txt", Body=SECRET)
    return ports, creds, s3


def test_filer_and_master_http_apis_refuse_uploads_listings_and_admin(weed):
    ports, _, s3 = weed
    filer = f"http://127.0.0.1:{ports['filer']}/buckets/kimberly/users/victim"
    master = f"http://127.0.0.1:{ports['master']}"
    form = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n\r\n'
    attempts = [
        _http("PUT", f"{filer}/planted.txt", b"planted"),
        _http(
            "POST",
            f"{filer}/",
            form + b"planted\r\n--b--\r\n",
            **{"Content-Type": "multipart/form-data; boundary=b"},
        ),
        _http("GET", f"{filer}/", Accept="application/json"),
        _http("GET", f"{filer}/t.txt"),
        _http("DELETE", f"{filer}/t.txt"),
        _http("GET", f"{master}/col/delete?collection=kimberly"),
        _http("GET", f"{master}/dir/assign"),
    ]
    for status, body in attempts:
        assert status in REFUSED, (status, body)
        assert b"t.txt" not in body and SECRET not in body and b"fid" not in body
    for key in ("users/victim/planted.txt", "users/victim/x"):
        with pytest.raises(botocore.exceptions.ClientError):
            s3.head_object(Bucket="kimberly", Key=key)
    body = s3.get_object(Bucket="kimberly", Key="users/victim/t.txt")["Body"].read()
    assert body == SECRET, "the collection was not deleted"


def _fid(ports: dict[str, int], home: Path) -> str:
    """The volume file id of t.txt's chunk, from the owner's shell (it holds the
    certificate)."""
    meta = _weed(
        home,
        "shell",
        f"-master=127.0.0.1:{ports['master']}.{ports['master_grpc']}",
        f"-filer=127.0.0.1:{ports['filer']}.{ports['filer_grpc']}",
        config=seaweed_security.config_dir(),
        stdin="fs.meta.cat /buckets/kimberly/users/victim/t.txt\n",
    )
    found = re.search(r'"fileId":\s*"([^"]+)"', meta)
    assert found, meta
    return found[1]


def test_the_volume_server_reads_and_writes_only_with_a_jwt_of_its_key(weed, tmp_path):
    ports, creds, s3 = weed
    fid = _fid(ports, tmp_path)
    url = f"http://127.0.0.1:{ports['volume']}/{fid}"
    for token in (
        None,
        _jwt("known-to-the-caller", fid=fid),  # WEED_* stayed out of weed
        _jwt(creds.weed_signing, fid=fid),  # the write key reads nothing
    ):
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        status, body = _http("GET", url, None, **auth)
        assert status == 401 and SECRET not in body
    read = _jwt(creds.weed_signing_read, fid=fid)
    assert _http("GET", url, Authorization=f"Bearer {read}") == (200, SECRET)
    assert _http("PUT", url, b"overwritten")[0] == 401
    assert _http("POST", url, b"overwritten")[0] == 401
    assert _http("DELETE", url)[0] == 401
    body = s3.get_object(Bucket="kimberly", Key="users/victim/t.txt")["Body"].read()
    assert body == SECRET


def test_grpc_ports_take_only_clients_with_the_certificate(weed, tmp_path):
    ports, _, _ = weed
    tls = seaweed_security.tls_dir()
    for name in ("master_grpc", "volume_grpc", "filer_grpc", "s3_grpc", "admin_grpc"):
        assert not _grpc_answers(ports[name], None), name
        assert not _grpc_answers(ports[name], tls), name
        assert _grpc_answers(ports[name], tls, certificate=True), name
    # `weed backup` copies whole volumes over gRPC: only the owner's works.
    volume_id = _fid(ports, tmp_path).split(",")[0]
    address = f"127.0.0.1:{ports['master']}.{ports['master_grpc']}"
    for who, config in (("stranger", None), ("owner", seaweed_security.config_dir())):
        out = tmp_path / f"{who}-copy"
        out.mkdir()
        backup = ("backup", f"-server={address}", "-collection=kimberly")
        args = (*backup, f"-volumeId={volume_id}", f"-dir={out}")
        _weed(tmp_path / who, *args, config=config)
    assert not list((tmp_path / "stranger-copy").iterdir())
    copied = b"".join(p.read_bytes() for p in (tmp_path / "owner-copy").glob("*.dat"))
    assert SECRET in copied


def test_a_seaweedfs_older_code_started_is_restarted_locked_on_its_ports(
    scratch_s3, monkeypatch
):
    new_command = seaweed._command

    def old_command(ports, conf, security):  # no -config_dir, no -disableHttp
        cmd = new_command(ports, conf, security)
        return [a for a in cmd if not a.startswith(("-config_dir=", "-disableHttp"))]

    write_config = seaweed_security.write_config
    monkeypatch.setattr(seaweed, "_command", old_command)
    monkeypatch.setattr(seaweed_security, "write_config", lambda creds: Path("/none"))
    (old,) = runtime.ensure(auto_stop=False)
    ports = json.loads((scratch_s3 / "seaweed" / "ports.json").read_text())
    s3 = seaweed.client(ports["s3"], credentials.load_or_create())
    s3.put_object(Bucket="kimberly", Key="kept", Body=b"kept")
    listing = f"http://127.0.0.1:{ports['filer']}/buckets/kimberly/"
    assert _http("GET", listing, Accept="application/json")[0] == 200  # the finding
    assert seaweed.is_legacy()

    monkeypatch.setattr(seaweed, "_command", new_command)
    monkeypatch.setattr(seaweed_security, "write_config", write_config)
    (again,) = runtime.ensure(auto_stop=False)
    assert not again.started_here and again.env == old.env  # same endpoint, keys
    assert not seaweed.is_legacy()
    assert _http("GET", listing, Accept="application/json")[0] in REFUSED
    assert s3.get_object(Bucket="kimberly", Key="kept")["Body"].read() == b"kept"
