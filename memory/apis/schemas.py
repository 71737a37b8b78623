"""The documented shapes of the memory API: what apis.py accepts and answers.

Responses are rendered by hand (memory.outputs.memory_out, on the hot path) or by the
ModelSerializers here; the plain serializers only describe them in the OpenAPI
schema, and the *Input ones describe JSON that a service validates itself.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import inline_serializer
from rest_framework import serializers

from kimberly.api.pagination import page_serializer
from kimberly.api.serializers import StrictInput
from memory.constants import (
    FEEDBACK_VALUES,
    MAX_CHANNELS,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    Scope,
    Source,
    Status,
    Tier,
)
from memory.models import (
    EMBEDDING_DIMENSIONS,
    Goal,
    MeditationRun,
    MemoryVersion,
    ScoreRecord,
)

FLOAT32_MAX = 3.4e38


def tag_list(max_items: int = MAX_TAGS, **kwargs: Any) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.CharField(max_length=MAX_TAG_LENGTH),
        max_length=max_items,
        **kwargs,
    )


# ------------------------------------------------------------------ requests


class MetadataInput(StrictInput):
    """metadata on create/PATCH: the keys given replace the stored ones."""

    tags = tag_list(required=False)
    source = serializers.ChoiceField(choices=Source.choices, required=False)  # type: ignore[assignment]
    channels = tag_list(MAX_CHANNELS, required=False)
    sensitive = serializers.BooleanField(required=False)
    scope = serializers.ChoiceField(choices=Scope.choices, required=False)
    user_feedback = serializers.ChoiceField(
        choices=FEEDBACK_VALUES, allow_null=True, required=False
    )
    version = serializers.JSONField(
        required=False, allow_null=True, help_text="ignored: the server counts"
    )


class EmbeddingRowInput(StrictInput):
    memory_id = serializers.CharField(help_text="one of your memories")
    embedding = serializers.ListField(
        child=serializers.FloatField(min_value=-FLOAT32_MAX, max_value=FLOAT32_MAX),
        min_length=EMBEDDING_DIMENSIONS,
        max_length=EMBEDDING_DIMENSIONS,
        help_text="not all zeros",
    )


EMBEDDING_ROWS = serializers.ListField(
    child=EmbeddingRowInput(), min_length=1, max_length=500
)


# ----------------------------------------------------------------- responses


class MetadataSchema(serializers.Serializer[Any]):
    tags = serializers.ListField(child=serializers.CharField())
    source = serializers.ChoiceField(choices=Source.choices)  # type: ignore[assignment]
    channels = serializers.ListField(child=serializers.CharField())
    sensitive = serializers.BooleanField()
    scope = serializers.ChoiceField(choices=Scope.choices)
    user_feedback = serializers.ChoiceField(choices=FEEDBACK_VALUES, allow_null=True)
    version = serializers.IntegerField()


class AuditSchema(serializers.Serializer[Any]):
    created_by = serializers.CharField()
    consent = serializers.BooleanField()


class MemoryItemOutput(serializers.Serializer[Any]):
    id = serializers.CharField()
    type = serializers.ChoiceField(choices=Tier.choices)
    content = serializers.CharField()
    size_bytes = serializers.IntegerField()
    metadata = MetadataSchema()
    score = serializers.FloatField()
    embedding_ref = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=Status.choices)
    protected = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    last_seen_at = serializers.DateTimeField(allow_null=True)
    archived_at = serializers.DateTimeField(allow_null=True)
    access_count = serializers.IntegerField()
    audit = AuditSchema()


class MemoryVersionOutput(serializers.ModelSerializer[MemoryVersion]):
    class Meta:
        model = MemoryVersion
        fields = [
            "version",
            "action",
            "actor_type",
            "actor_id",
            "changed_at",
            "tier",
            "status",
            "protected",
            "content",
            "metadata",
        ]


class MemoryHistoryOutput(serializers.Serializer[Any]):
    current = MemoryItemOutput()
    versions = MemoryVersionOutput(many=True)


class BulkOutput(serializers.Serializer[Any]):
    action = serializers.CharField()
    requested = serializers.IntegerField()
    changed = serializers.IntegerField()
    items = MemoryItemOutput(many=True, required=False, help_text="export only")


class TierUsageSchema(serializers.Serializer[Any]):
    quota_bytes = serializers.IntegerField()
    hard_limit_bytes = serializers.IntegerField()
    used_bytes = serializers.IntegerField()
    override = serializers.BooleanField()
    active_items = serializers.IntegerField()
    archived_items = serializers.IntegerField()


MetricsOutput = inline_serializer(
    "MemoryMetrics",
    {
        "tiers": inline_serializer(
            "TierUsages", {tier: TierUsageSchema() for tier in Tier.values}
        ),
        "last_meditation": serializers.DateTimeField(allow_null=True),
        "embedding_enabled": serializers.BooleanField(),
        "embedding_pending": serializers.IntegerField(
            help_text="this user's memories still waiting for their vector"
        ),
    },
)


class RelevanceSchema(serializers.Serializer[Any]):
    semantic = serializers.FloatField(allow_null=True)
    lexical = serializers.FloatField(allow_null=True)
    score = serializers.FloatField()
    freshness = serializers.FloatField()
    final = serializers.FloatField()


class QueryHitSchema(serializers.Serializer[Any]):
    item = MemoryItemOutput()
    relevance = RelevanceSchema()
    why = serializers.CharField()


ExplainSchema = inline_serializer(
    "QueryExplain",
    {
        "mode": serializers.CharField(),
        "fused_relevance": serializers.ListField(child=serializers.FloatField()),
        "timings_ms": serializers.DictField(child=serializers.FloatField()),
        "formula": serializers.CharField(),
        "lambda": serializers.FloatField(),
        "freshness_weight": serializers.FloatField(),
        "fusion": serializers.CharField(),
    },
    required=False,
    help_text="with explain: true",
)


class MemoryQueryOutput(serializers.Serializer[Any]):
    results = QueryHitSchema(many=True)
    explain = ExplainSchema


EmbedOutput = inline_serializer(
    "EmbedCounts",
    {"received": serializers.IntegerField(), "stored": serializers.IntegerField()},
)


class GoalOutput(serializers.ModelSerializer[Goal]):
    embedded = serializers.SerializerMethodField()

    class Meta:
        model = Goal
        fields = ["id", "text", "tags", "embedded", "created_at"]

    def get_embedded(self, goal: Goal) -> bool:
        return goal.vector is not None


GoalListOutput = inline_serializer("GoalList", {"items": GoalOutput(many=True)})


class MeditationRunOutput(serializers.ModelSerializer[MeditationRun]):
    run_id = serializers.IntegerField(source="pk")

    class Meta:
        model = MeditationRun
        fields = [
            "run_id",
            "status",
            "dry_run",
            "scoring_version",
            "weights",
            "as_of",
            "started_at",
            "finished_at",
            "duration_ms",
            "processed",
            "promoted",
            "expired",
            "archived",
            "purged",
            "deferred",
            "error",
        ]


class ScoreRecordOutput(serializers.ModelSerializer[ScoreRecord]):
    memory_id = serializers.SerializerMethodField()

    class Meta:
        model = ScoreRecord
        fields = [
            "memory_id",
            "tier",
            "decision",
            "reason",
            "score",
            "previous_score",
            "relevance_to_goals",
            "emotional_weight",
            "predictive_value",
            "recency_freq",
        ]

    def get_memory_id(self, record: ScoreRecord) -> str:
        return f"mem_{record.item_id}"


SCORE_PAGE = page_serializer(ScoreRecordOutput, "ScoreRecordPage")


class MeditationDetailOutput(MeditationRunOutput):
    scores = SCORE_PAGE

    class Meta(MeditationRunOutput.Meta):
        fields = [*MeditationRunOutput.Meta.fields, "scores"]


class ForecastOutput(MeditationRunOutput):
    run_id = serializers.IntegerField(
        source="pk", allow_null=True, help_text="always null: a forecast keeps no run"
    )
    decisions = SCORE_PAGE

    class Meta(MeditationRunOutput.Meta):
        fields = [*MeditationRunOutput.Meta.fields, "decisions"]
