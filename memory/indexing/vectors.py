"""Storing vectors: the model's for queued memories, or the user's own (POST /v1/memory/embed), and dropping those of changed text."""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from typing import Any, TypedDict

from django.db import transaction
from django.db.models import CharField, Func, QuerySet, Value
from django.db.models.functions import Cast, Concat, Replace

from audit.services import audit_record
from kimberly.api.errors import NotFound, invalid_field
from kimberly.context import Context
from memory import embeddings, sealing
from memory.models import EMBEDDING_DIMENSIONS, MemoryEmbedding, MemoryItem
from memory.selectors import VECTOR_CONSENT, parse_memory_id, with_vector_consent
from users import consents
from users.models import User

USER_MODEL_TAG = "user-supplied"


FLOAT32_MAX = 3.4e38


def memory_embed_items(item_ids: list[uuid.UUID]) -> int:
    """Embed these items' current content (skipping ones already embedded as is)."""
    items = list(
        with_vector_consent(
            MemoryItem.objects.filter(pk__in=item_ids, user__embedding_enabled=True)
        )
        .select_related("embedding")
        .only(
            "id",
            "user_id",
            "content",
            "sealed",
            "embedding__content_hash",
            "embedding__model",
        )
    )
    tag = embeddings.model_tag()
    todo = []
    for item in items:
        existing = getattr(item, "embedding", None)
        digest = embeddings.content_hash(item.content)
        if existing is None or existing.content_hash != digest:
            todo.append((item, digest))
        elif existing.model not in (tag, USER_MODEL_TAG):
            todo.append(
                (item, digest)
            )  # embedded by an older model; the user's own stay
    if not todo:
        return 0
    vectors = embeddings.embed_texts([item.content for item, _ in todo])
    _store_vectors(
        [
            (item, digest, vector)
            for (item, digest), vector in zip(todo, vectors, strict=True)
        ],
        tag,
    )
    return len(todo)


def _store_vectors(rows: list[tuple[MemoryItem, str, Any]], tag: str) -> None:
    with transaction.atomic():
        # Lock the items in id order (every writer of these rows does), then keep
        # only those whose content is still what was embedded: an item deleted or
        # edited meanwhile is skipped; its edit queued a fresh embed of its own.
        # The hash is compared in SQL so the content does not travel back (a
        # sealed item's is the hash of its opened text). Its vector needs the
        # consent, asked after the locks: a withdrawal that committed while we
        # waited is seen, and one that comes later waits for these locks.
        ids = [i.id for i, _, _ in rows]
        current = _current_digests(
            MemoryItem.objects.select_for_update().filter(pk__in=ids).order_by("pk")
        )
        allowed = set(
            with_vector_consent(MemoryItem.objects.filter(pk__in=ids)).values_list(
                "pk", flat=True
            )
        )
        objs = [
            MemoryEmbedding(
                item_id=item.id,
                user_id=item.user_id,
                vector=vector,
                model=tag,
                content_hash=digest,
            )
            for item, digest, vector in sorted(rows, key=lambda r: r[0].id)
            if current.get(item.id) == digest and item.id in allowed
        ]
        MemoryEmbedding.objects.bulk_create(
            objs,
            update_conflicts=True,
            unique_fields=["item"],
            update_fields=["vector", "model", "content_hash", "created_at"],
        )
        MemoryItem.objects.filter(pk__in=[o.item_id for o in objs]).update(
            embedding_ref=Concat(
                Value("emb_"), Replace(Cast("id", CharField()), Value("-"), Value(""))
            )
        )


def _current_digests(qs: QuerySet[MemoryItem]) -> dict[uuid.UUID, str]:
    """Each item's content hash now: in SQL, or from the opened text if sealed."""
    out = {}
    for pk, user_id, digest, blob in qs.annotate(
        digest=ContentSHA256("content")
    ).values_list("id", "user_id", "digest", "sealed"):
        opened = sealing.opened(user_id, blob) if blob is not None else None
        out[pk] = embeddings.content_hash(opened) if opened is not None else digest
    return out


def memory_drop_vectors(*, items: list[MemoryItem]) -> None:
    """Forget the vectors of items whose content is changing (the caller holds their
    row locks and saves them): semantic search must never match text the user
    removed, even when embeddings are off and nothing re-embeds it yet."""
    MemoryEmbedding.objects.filter(item_id__in=[i.id for i in items]).delete()
    for item in items:
        item.embedding_ref = ""


class UserVector(TypedDict):
    """One vector the user computed elsewhere (POST /v1/memory/embed)."""

    memory_id: str
    embedding: list[float]


def memory_embed_user_vectors(
    *, ctx: Context, user: User, rows: Sequence[UserVector]
) -> dict[str, int]:
    """Store vectors computed elsewhere by the user: 384 finite floats per own id.

    Raw JSON may reach here unchecked: every row is validated (a wrong shape is 400).
    """
    if not isinstance(rows, list) or not rows:
        raise invalid_field(
            "embeddings", "must be a non-empty list of {memory_id, embedding}"
        )
    if len(rows) > 500:
        raise invalid_field("embeddings", "at most 500 per request")
    parsed: dict[uuid.UUID, list[float]] = {}
    for n, row in enumerate(rows):
        if not isinstance(row, dict) or set(row) != {"memory_id", "embedding"}:
            raise invalid_field(f"embeddings[{n}]", "must be {memory_id, embedding}")
        vector = row["embedding"]
        if not isinstance(vector, list) or len(vector) != EMBEDDING_DIMENSIONS:
            raise invalid_field(
                f"embeddings[{n}].embedding",
                f"must have {EMBEDDING_DIMENSIONS} numbers",
            )
        if not all(
            isinstance(x, int | float)
            and not isinstance(x, bool)
            and math.isfinite(x)
            and abs(x) <= FLOAT32_MAX
            for x in vector
        ):
            raise invalid_field(
                f"embeddings[{n}].embedding",
                "must be finite numbers within float32 range",
            )
        norm = math.sqrt(sum(float(x) * float(x) for x in vector))
        if norm < 1e-6:
            # A zero vector has no direction: cosine distance to it is NaN.
            raise invalid_field(
                f"embeddings[{n}].embedding", "must not be (nearly) all zeros"
            )
        try:
            parsed[parse_memory_id(row["memory_id"])] = [float(x) for x in vector]
        except NotFound:
            raise invalid_field(
                f"embeddings[{n}].memory_id", "is not one of your memories"
            ) from None
    items = {i.id: i for i in MemoryItem.objects.filter(user=user, pk__in=list(parsed))}
    missing = [f"mem_{pk}" for pk in parsed if pk not in items]
    if missing:
        raise invalid_field(
            "embeddings", f"not your memories: {', '.join(missing[:10])}"
        )
    if any(i.sensitive for i in items.values()):
        consents.require(user, VECTOR_CONSENT, "A vector of a sensitive memory")
    _store_vectors(
        [
            (items[pk], embeddings.content_hash(items[pk].content), vec)
            for pk, vec in parsed.items()
        ],
        USER_MODEL_TAG,
    )
    audit_record(
        ctx=ctx,
        action="memory.embed",
        user_id=user.pk,
        target_type="memory",
        details={"count": len(parsed)},
    )
    return {"received": len(rows), "stored": len(parsed)}


class ContentSHA256(Func):
    """sha256 hex of text with PostgreSQL's built-in sha256() (Django's SHA256 needs
    pgcrypto); equal to embeddings.content_hash."""

    template = "encode(sha256(convert_to(%(expressions)s, 'UTF8')), 'hex')"
    output_field = CharField()
