"""HTTP API for memories: authenticate → parse → one service/selector → serialize.

items.py       create, list, read, edit, delete; usage (metrics)
changes.py     lifecycle actions, history and revert, bulk
retrieval.py   query and user-supplied vectors
goals.py       the user's goals
meditation.py  meditate, forecast, runs
imports.py     imports of exports and transcripts, and their jobs
proposals.py   proposed memories; where a memory was read (accesses)
attachments.py uploaded documents (multipart), their download links
schemas.py     response shapes for the OpenAPI schema
"""

from memory.apis.attachments import (
    AttachmentCollectionApi,
    AttachmentDetailApi,
)
from memory.apis.changes import (
    MemoryBulkApi,
    MemoryHistoryApi,
    MemoryLifecycleApi,
    MemoryRevertApi,
)
from memory.apis.goals import (
    GoalCollectionApi,
    GoalDetailApi,
)
from memory.apis.imports import (
    MemoryImportApi,
    MemoryImportDetailApi,
    MemoryImportListApi,
)
from memory.apis.items import (
    MemoryCollectionApi,
    MemoryDetailApi,
    MemoryMetricsApi,
)
from memory.apis.meditation import (
    ForecastApi,
    MeditateApi,
    MeditationDetailApi,
    MeditationListApi,
)
from memory.apis.proposals import (
    MemoryAccessesApi,
    ProposalDecideApi,
    ProposalListApi,
)
from memory.apis.retrieval import (
    MemoryEmbedApi,
    MemoryQueryApi,
)

__all__ = [
    "AttachmentCollectionApi",
    "AttachmentDetailApi",
    "ForecastApi",
    "GoalCollectionApi",
    "GoalDetailApi",
    "MeditateApi",
    "MeditationDetailApi",
    "MeditationListApi",
    "MemoryAccessesApi",
    "MemoryBulkApi",
    "MemoryCollectionApi",
    "MemoryDetailApi",
    "MemoryEmbedApi",
    "MemoryHistoryApi",
    "MemoryImportApi",
    "MemoryImportDetailApi",
    "MemoryImportListApi",
    "MemoryLifecycleApi",
    "MemoryMetricsApi",
    "MemoryQueryApi",
    "MemoryRevertApi",
    "ProposalDecideApi",
    "ProposalListApi",
]
