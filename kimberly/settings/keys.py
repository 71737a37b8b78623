"""Settings of encryption at rest: the KMS provider of key-encryption keys, and
which memories are sealed (memory/sealing.py)."""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from kimberly.env import env_bool, env_opt, env_str

# Which provider wraps new data keys: local (keys of this deployment) or aws.
KMS_PROVIDER = env_str("KMS_PROVIDER", "local")
if KMS_PROVIDER not in {"local", "aws"}:
    raise ImproperlyConfigured("KMS_PROVIDER must be local or aws")
# local: "id:base64key,..." (an environment secret; the last is current unless
# KMS_LOCAL_KEY_ID says otherwise), else a key file made under var/ on first use.
KMS_LOCAL_KEYS = env_opt("KMS_LOCAL_KEYS") or ""
KMS_LOCAL_KEY_ID = env_opt("KMS_LOCAL_KEY_ID") or ""
KMS_LOCAL_KEY_FILE = env_str(
    "KMS_LOCAL_KEY_FILE",
    str(Path(__file__).resolve().parents[2] / "var" / "kms" / "local-keys.json"),
)
# aws: the KMS key (id, ARN or alias) and, for a stand-in or a VPC endpoint, its URL.
KMS_AWS_KEY_ID = env_opt("KMS_AWS_KEY_ID") or ""
KMS_AWS_ENDPOINT_URL = env_opt("KMS_AWS_ENDPOINT_URL") or ""
KMS_AWS_REGION = env_str("KMS_AWS_REGION", "us-east-1")
# Sensitive memories are always sealed (AES-256-GCM under the user's data key);
# true seals every memory, at the price of full-text search: a sealed item is
# found by vector, id, tags and filters only (README "Privacy for operators").
SEAL_ALL_CONTENT = env_bool("SEAL_ALL_CONTENT", False)
