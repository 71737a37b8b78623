"""Settings of the agents' outgoing webhooks (imported by base.py)."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from kimberly.env import env_bool, env_float, env_int

# Webhooks to private, loopback, link-local and other non-public addresses (and
# over plain http) are refused, at set time and again at every delivery, so a
# user's URL cannot reach the machine's own services or the cloud metadata
# endpoint. True only where every receiver is on a trusted private network.
AGENT_WEBHOOK_ALLOW_PRIVATE = env_bool("AGENT_WEBHOOK_ALLOW_PRIVATE", False)
# Seconds one delivery attempt may take in all: connect, TLS, send, the answer's
# headers (its body is never read).
AGENT_WEBHOOK_TIMEOUT_SECONDS = env_float("AGENT_WEBHOOK_TIMEOUT_SECONDS", 5.0)
# Attempts per delivery, the first included; the pauses between them grow from
# 10 s by a factor of 3 (agents.webhooks.retry_delays).
AGENT_WEBHOOK_MAX_ATTEMPTS = env_int("AGENT_WEBHOOK_MAX_ATTEMPTS", 5)
# The first pause between attempts; each next one is three times longer.
AGENT_WEBHOOK_RETRY_BASE_SECONDS = env_float("AGENT_WEBHOOK_RETRY_BASE_SECONDS", 10.0)
if not 0 < AGENT_WEBHOOK_TIMEOUT_SECONDS <= 60:
    raise ImproperlyConfigured("AGENT_WEBHOOK_TIMEOUT_SECONDS must be in (0, 60]")
if not 1 <= AGENT_WEBHOOK_MAX_ATTEMPTS <= 20:
    raise ImproperlyConfigured("AGENT_WEBHOOK_MAX_ATTEMPTS must be from 1 to 20")
