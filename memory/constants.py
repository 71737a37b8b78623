"""Memory vocabulary: tiers, statuses, metadata enums and input limits."""

from __future__ import annotations

from django.db import models

MAX_CONTENT_BYTES = 64 * 1024
MAX_TAGS = 32
MAX_TAG_LENGTH = 64
MAX_CHANNELS = 16
MAX_BULK_IDS = 500
ID_PREFIX = "mem_"


class Tier(models.TextChoices):
    SHORT_TERM = "short-term"
    LONG_TERM = "long-term"
    PERMANENT = "permanent"


class Status(models.TextChoices):
    ACTIVE = "active"
    ARCHIVED = "archived"


class Source(models.TextChoices):
    CHAT = "chat"
    AGENT = "agent"
    IMPORT = "import"
    UPLOAD = "upload"
    API = "api"


class ProposalStatus(models.TextChoices):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class Scope(models.TextChoices):
    PRIVATE = "private"
    SHARED = "shared"
    PUBLIC = "public"


class ActorType(models.TextChoices):
    USER = "user"
    AGENT = "agent"
    SYSTEM = "system"


FEEDBACK_VALUES = ["thumbs_up", "thumbs_down"] + [f"rating:{n}" for n in range(1, 6)]
