"""SeaweedFS's own authentication for `weed mini`: JWT-signed HTTP, mutual-TLS gRPC.

`weed -config_dir=var/seaweed mini` reads var/seaweed/security.toml (0600, in a
0700 directory). With it the volume server answers reads and writes only with a
JWT signed with keys from var/credentials.json, the filer's HTTP API the same
(and `mini -disableHttp` switches that API off, with the master's), and every gRPC
port (master, volume, filer, S3, admin) takes only clients that present the node
certificate in var/seaweed/tls/. Its CA is made afresh at every start and its
private key never written, so no other certificate can be issued. The S3 gateway
signs its own internal requests: S3 clients still need only the access key pair.

The owner can still administer the store: `weed -config_dir=var/seaweed shell
-master=127.0.0.1:<master>.<master_grpc>` (ports in var/seaweed/ports.json).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
from pathlib import Path

from kimberly.runtime import common, credentials

# Every gRPC section `weed scaffold -config=security` lists; `client` is what
# weed's own tools (shell, backup) present when they dial.
_GRPC_SECTIONS = (
    "master",
    "volume",
    "filer",
    "s3",
    "admin",
    "worker",
    "msg_broker",
    "msg_agent",
    "mq",
    "client",
)
CERT_DAYS = 3650  # remade at every start; only a server left up longer would care


def config_dir() -> Path:
    return common.seaweed_dir()


def config_path() -> Path:
    return config_dir() / "security.toml"


def tls_dir() -> Path:
    return common.seaweed_dir() / "tls"


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def render(creds: credentials.Credentials, ca: Path, cert: Path, key: Path) -> str:
    """security.toml: the four JWT keys and mutual TLS on every gRPC section."""
    keys = {
        "jwt.signing": creds.weed_signing,
        "jwt.signing.read": creds.weed_signing_read,
        "jwt.filer_signing": creds.weed_filer_signing,
        "jwt.filer_signing.read": creds.weed_filer_signing_read,
    }
    if not all(keys.values()):
        # An empty key switches that check off in weed, silently.
        raise RuntimeError("SeaweedFS signing keys missing from var/credentials.json")
    lines = ["# Written by kimberly.runtime at every start of weed mini; do not edit."]
    for section, value in keys.items():
        lines += ["", f"[{section}]", f"key = {_toml_string(value)}"]
    lines += ["", "[grpc]", f"ca = {_toml_string(str(ca))}"]
    for component in _GRPC_SECTIONS:
        lines += [
            "",
            f"[grpc.{component}]",
            f"cert = {_toml_string(str(cert))}",
            f"key = {_toml_string(str(key))}",
        ]
    return "\n".join(lines) + "\n"


def write_config(creds: credentials.Credentials) -> Path:
    """Issue a fresh CA and node certificate, write them and security.toml (0600).

    Returns the directory to pass as `weed -config_dir`."""
    ca_pem, cert_pem, key_pem = _issue_certificates()
    tls = tls_dir()
    ca, cert, key = tls / "ca.crt", tls / "node.crt", tls / "node.key"
    for path, pem in ((ca, ca_pem), (cert, cert_pem), (key, key_pem)):
        common.write_private(path, pem)
    tls.chmod(0o700)
    common.write_private(config_path(), render(creds, ca, cert, key))
    return config_dir()


def _issue_certificates() -> tuple[str, str, str]:
    """(CA cert, node cert, node key) as PEM; the node serves and dials all gRPC."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    def builder(subject: x509.Name, issuer: x509.Name) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("Kimberly embedded SeaweedFS CA")
    ca = (
        builder(ca_name, ca_name)
        .public_key(ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [
        x509.IPAddress(ipaddress.ip_address(common.HOST)),
        x509.DNSName("localhost"),
    ]
    usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    node = (
        builder(name("kimberly-seaweedfs"), ca_name)
        .public_key(key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return (
        ca.public_bytes(pem).decode(),
        node.public_bytes(pem).decode(),
        key_pem.decode(),
    )
