"""A user's goals: the input of relevance_to_goals in meditation."""

from __future__ import annotations

from django.db import transaction

from audit.services import audit_record
from kimberly.api.errors import NotFound, invalid_field
from kimberly.context import Context
from memory import embeddings, indexing
from memory.constants import (
    MAX_TAGS,
)
from memory.metadata import storable, string_list
from memory.models import Goal
from users.models import User

MAX_GOALS = 50


@transaction.atomic
def goal_create(
    *, ctx: Context, user: User, text: str, tags: list[str] | None = None
) -> Goal:
    """Add an active goal or project (embedded now when embeddings are on)."""
    if not isinstance(text, str) or not text.strip() or len(text) > 1000:
        raise invalid_field("text", "must be 1..1000 characters")
    if not storable(text):
        raise invalid_field("text", "contains characters that cannot be stored")
    clean_tags = string_list(tags if tags is not None else [], "tags", MAX_TAGS)
    if Goal.objects.filter(user=user).count() >= MAX_GOALS:
        raise invalid_field("goals", f"at most {MAX_GOALS} goals")
    goal = Goal(user=user, text=text.strip(), tags=clean_tags)
    if indexing.embedding_wanted(user):
        try:
            goal.vector = embeddings.embed_texts([goal.text])[0]
            goal.model = embeddings.model_tag()
            goal.content_hash = embeddings.content_hash(goal.text)
        except embeddings.EmbeddingUnavailable:
            goal.vector = None  # tags count meanwhile; the sweep embeds it later
    goal.save()
    audit_record(
        ctx=ctx,
        action="goal.create",
        user_id=user.pk,
        target_type="goal",
        target_id=str(goal.pk),
    )
    return goal


@transaction.atomic
def goal_delete(*, ctx: Context, user: User, goal_id: int) -> None:
    deleted, _ = Goal.objects.filter(pk=goal_id, user=user).delete()
    if not deleted:
        raise NotFound(f"No goal {goal_id}.")
    audit_record(
        ctx=ctx,
        action="goal.delete",
        user_id=user.pk,
        target_type="goal",
        target_id=str(goal_id),
    )
