"""Memory items, their version history, per-tier quotas and idempotency records."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.core.validators import MinValueValidator
from django.db import models
from pgvector.django import HnswIndex, VectorField

from memory.constants import ID_PREFIX, ActorType, Scope, Source, Status, Tier
from memory.sealing import SealedContent


class MemoryItem(SealedContent, models.Model):
    """One remembered thing of one user, in one tier; PostgreSQL is its system of record.

    Metadata lives in real columns (tags, source, ...) so filters use indexes;
    `size_bytes` is what quotas count (see memory.metadata.item_size).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="memories",
        db_index=False,  # (user, tier, status) and (user, created_at) lead with user
    )
    tier = models.CharField(max_length=16, choices=Tier.choices)
    content = models.TextField()  # "" in the row while sealed (memory.sealing)
    sealed = models.BinaryField(null=True, blank=True, editable=False)
    size_bytes = models.PositiveIntegerField()
    tags = ArrayField(models.CharField(max_length=64), default=list, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.API)
    channels = ArrayField(models.CharField(max_length=64), default=list, blank=True)
    sensitive = models.BooleanField(default=False)
    scope = models.CharField(
        max_length=16, choices=Scope.choices, default=Scope.PRIVATE
    )
    user_feedback = models.CharField(max_length=16, blank=True, default="")
    version = models.PositiveIntegerField(default=1)
    score = models.FloatField(default=0.0)
    embedding_ref = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.ACTIVE
    )
    protected = models.BooleanField(default=False)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    last_seen_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    access_count = models.PositiveIntegerField(default=0)
    created_by = models.CharField(max_length=16, choices=ActorType.choices)
    consent = models.BooleanField(default=True)
    # Where an imported item came from (e.g. "chatgpt:<message id>"); unique per
    # user when set, which makes re-importing a file a no-op. "" for the rest.
    external_id = models.CharField(
        max_length=255, blank=True, default="", db_default=""
    )  # db_default: raw COPYs (bench/) that name no external_id still work
    # |VADER compound| of the content in [0, 1], computed when content is written
    # so that meditation scores a million items in SQL without re-reading text.
    sentiment = models.FloatField(default=0.0)
    # A chunk of this document; RESTRICT: attachment_delete removes chunks first.
    attachment = models.ForeignKey(
        "memory.Attachment", models.RESTRICT, null=True, blank=True, db_index=False
    )
    attachment_offset = models.PositiveIntegerField(null=True, blank=True)  # chars
    # Full-text document, maintained by PostgreSQL itself (lexical retrieval).
    search_vector = models.GeneratedField(
        expression=SearchVector("content", config="english"),
        output_field=SearchVectorField(),
        db_persist=True,
    )

    class Meta:
        indexes = [
            models.Index(
                fields=["user", "tier", "status"], name="memory_user_tier_status"
            ),
            models.Index(fields=["user", "-created_at"], name="memory_user_created"),
            GinIndex(fields=["tags"], name="memory_tags_gin"),
            GinIndex(fields=["search_vector"], name="memory_search_gin"),
            # What still waits for a vector (empty embedding_ref: never embedded,
            # or edited since): counted at every /metrics scrape and per user by
            # GET /v1/memory/metrics, so it must stay small and index-only.
            models.Index(
                fields=["user"],
                name="memory_unembedded",
                condition=models.Q(embedding_ref="", status="active"),
            ),
            models.Index(
                fields=["attachment"],
                name="memory_attachment_chunks",
                condition=models.Q(attachment__isnull=False),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(score__gte=0.0) & models.Q(score__lte=1.0),
                name="memory_score_0_1",
            ),
            # Imports insert with ON CONFLICT (user_id, external_id) WHERE
            # external_id <> '' DO NOTHING against this index (migration 0011).
            models.UniqueConstraint(
                fields=["user", "external_id"],
                condition=~models.Q(external_id=""),
                name="memory_user_external_id",
            ),
        ]

    def __str__(self) -> str:
        return self.public_id

    @property
    def public_id(self) -> str:
        return f"{ID_PREFIX}{self.id}"


class MemoryVersion(models.Model):
    """An item's state before a change, and who changed it when and how.

    Version n holds the content/metadata/tier the item had at version n; the
    current state is the item itself. Explains every edit and allows rollback.
    """

    item = models.ForeignKey(
        MemoryItem, on_delete=models.CASCADE, related_name="versions"
    )
    version = models.PositiveIntegerField()
    action = models.CharField(max_length=32)
    actor_type = models.CharField(max_length=16)
    actor_id = models.CharField(max_length=64)
    changed_at = models.DateTimeField()
    tier = models.CharField(max_length=16)
    status = models.CharField(max_length=16)
    protected = models.BooleanField()
    content = models.TextField()  # "" while sealed: open with sealing.open_versions
    sealed = models.BinaryField(null=True, blank=True, editable=False)
    metadata = models.JSONField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["item", "version"], name="memory_version_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.item_id} v{self.version}"


class Quota(models.Model):
    """Per user and tier: bytes in use by active items, and an optional override.

    `used_bytes` only ever changes through one conditional UPDATE in
    memory.quotas, which is what keeps it exact under concurrent writes.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="quotas",
        db_index=False,  # the unique (user, tier) index leads with user
    )
    tier = models.CharField(max_length=16, choices=Tier.choices)
    used_bytes = models.BigIntegerField(default=0)
    limit_bytes = models.BigIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="override in bytes; empty = the default",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "tier"], name="memory_quota_user_tier"
            ),
            models.CheckConstraint(
                condition=models.Q(used_bytes__gte=0), name="memory_quota_used_nonneg"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.tier}"


class IdempotencyKey(models.Model):
    """A write already done under this key: a retry returns its item, not a new one."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, db_index=False
    )  # the unique (user, key) index leads with user
    key = models.CharField(max_length=128)
    request_hash = models.CharField(max_length=64)
    item_id = models.UUIDField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "key"], name="memory_idempotency_unique"
            ),
        ]
        indexes = [models.Index(fields=["created_at"], name="memory_idem_created")]

    def __str__(self) -> str:
        return self.key


EMBEDDING_DIMENSIONS = 384


class MemoryEmbedding(models.Model):
    """The vector of one item, with the model that produced it (so a model change
    can re-embed). `user_id` is copied from the item so per-user vector search
    never has to touch the item table first."""

    item = models.OneToOneField(
        MemoryItem, on_delete=models.CASCADE, primary_key=True, related_name="embedding"
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    vector = VectorField(dimensions=EMBEDDING_DIMENSIONS)
    model = models.CharField(max_length=128)
    content_hash = models.CharField(
        max_length=64, help_text="sha256 of the embedded text"
    )
    created_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            HnswIndex(
                name="memory_embedding_hnsw",
                fields=["vector"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            ),
        ]

    def __str__(self) -> str:
        return f"{self.item_id} ({self.model})"


class RetrievalRecord(models.Model):
    """Read-side provenance: which memory was returned, at what rank, to which request.

    Answers "why did Kimberly know this?" and feeds meditation's predictive value.
    Written in batches from a Redis log, never on the request path; kept for
    RETRIEVAL_RECORDS_DAYS. `item_id` references the item in the schema only
    (migration 0009: FOREIGN KEY ... ON DELETE CASCADE), so every way an item
    goes, including meditation's SQL purge and a user's deletion, takes its
    records with it, and Django's collector never loads them.
    """

    id = models.BigAutoField(primary_key=True)
    user_id = models.UUIDField()
    item_id = models.UUIDField()
    # Who read it: "query" (request_id: the HTTP request id), "chat" (request_id:
    # the assistant message "msg_<uuid>"), later "agent" (the task id).
    kind = models.CharField(max_length=8, default="query", db_default="query")
    request_id = models.CharField(max_length=64, blank=True)
    rank = models.PositiveSmallIntegerField()
    final = models.FloatField()
    created_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(
                fields=["item_id", "-created_at"], name="memory_retrieval_item"
            ),
            models.Index(
                fields=["user_id", "-created_at"], name="memory_retrieval_user"
            ),
            # the nightly prune; appends at the right edge, as rows arrive in time order
            models.Index(fields=["created_at"], name="memory_retrieval_created"),
        ]

    def __str__(self) -> str:
        return f"{self.item_id} #{self.rank}"


class Goal(models.Model):
    """A user's active goal or project: what relevance_to_goals is measured against."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="goals"
    )
    text = models.CharField(max_length=1000)
    tags = ArrayField(models.CharField(max_length=64), default=list, blank=True)
    vector = VectorField(dimensions=EMBEDDING_DIMENSIONS, null=True, blank=True)
    # Like MemoryEmbedding: which model made `vector` from which text, so the sweep
    # and `memory reembed` can repair a goal whose vector is missing or outdated.
    model = models.CharField(max_length=128, blank=True, default="")
    content_hash = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["user", "-created_at"], name="memory_goal_user")
        ]

    def __str__(self) -> str:
        return self.text[:40]


class MeditationRun(models.Model):
    """One scoring run: version, weights, counts, timing.

    scope "user": one user's memories (with ScoreRecords). scope "all": the
    nightly run over every user; its counts are the sum of its per-user
    children, which the workers run in batches.
    """

    class State(models.TextChoices):
        QUEUED = "queued"
        DONE = "done"
        FAILED = "failed"

    class Scope(models.TextChoices):
        USER = "user"
        ALL = "all"

    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.USER)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="meditations",
        null=True,
        blank=True,
    )
    parent = models.ForeignKey(
        "self",
        on_delete=models.CASCADE,
        related_name="children",
        null=True,
        blank=True,
        help_text="the scope-all run this user run belongs to",
    )
    dry_run = models.BooleanField(default=False)
    status = models.CharField(
        max_length=16, choices=State.choices, default=State.QUEUED
    )
    scoring_version = models.CharField(max_length=16)
    weights = models.JSONField()
    as_of = models.DateTimeField()
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    processed = models.PositiveIntegerField(default=0)
    promoted = models.PositiveIntegerField(default=0)
    expired = models.PositiveIntegerField(default=0)
    archived = models.PositiveIntegerField(default=0)
    purged = models.PositiveIntegerField(default=0)
    deferred = models.PositiveIntegerField(
        default=0, help_text="left for the next run (cap)"
    )
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["user", "-started_at"], name="memory_meditation_user")
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(scope="all", user__isnull=True)
                | models.Q(scope="user", user__isnull=False),
                name="memory_meditation_scope_user",
            )
        ]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.scope}, {self.status})"


class ScoreRecord(models.Model):
    """One item in one run: its signals, score, and what the run decided and why.

    Archived items considered for purging have no signals (they are not scored).
    """

    class Decision(models.TextChoices):
        KEEP = "keep"
        PROMOTE = "promote"
        EXPIRE = "expire"
        ARCHIVE = "archive"
        PURGE = "purge"

    run = models.ForeignKey(
        MeditationRun,
        on_delete=models.CASCADE,
        related_name="scores",
        db_index=False,  # (run, item_id) below leads with run
    )
    item_id = models.UUIDField()
    tier = models.CharField(max_length=16)
    size_bytes = models.PositiveIntegerField()
    relevance_to_goals = models.FloatField(null=True)
    emotional_weight = models.FloatField(null=True)
    predictive_value = models.FloatField(null=True)
    recency_freq = models.FloatField(null=True)
    score = models.FloatField()
    previous_score = models.FloatField()
    decision = models.CharField(
        max_length=16, choices=Decision.choices, default=Decision.KEEP
    )
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["run", "item_id"], name="memory_score_run_item"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.item_id}: {self.score:.3f}"


from memory.attachments.models import Attachment  # noqa: E402
from memory.imports.models import MemoryImport  # noqa: E402
from memory.proposal_models import MemoryProposal  # noqa: E402

__all__ = [
    "EMBEDDING_DIMENSIONS",
    "Attachment",
    "Goal",
    "IdempotencyKey",
    "MeditationRun",
    "MemoryEmbedding",
    "MemoryImport",
    "MemoryItem",
    "MemoryProposal",
    "MemoryVersion",
    "Quota",
    "RetrievalRecord",
    "ScoreRecord",
]
