from django.urls import path

from memory import apis, services

lifecycle = [
    path(
        f"memory/<str:memory_id>/{action}",
        apis.MemoryLifecycleApi.as_view(action_name=action),
        name=f"memory-{action}",
    )
    for action in services.LIFECYCLE_ACTIONS
]

urlpatterns = [
    path("memory", apis.MemoryCollectionApi.as_view(), name="memory"),
    path("memory/bulk", apis.MemoryBulkApi.as_view(), name="memory-bulk"),
    path("memory/metrics", apis.MemoryMetricsApi.as_view(), name="memory-metrics"),
    path("memory/meditate", apis.MeditateApi.as_view(), name="memory-meditate"),
    path("memory/forecast", apis.ForecastApi.as_view(), name="memory-forecast"),
    path(
        "memory/meditations",
        apis.MeditationListApi.as_view(),
        name="memory-meditations",
    ),
    path(
        "memory/meditations/<int:run_id>",
        apis.MeditationDetailApi.as_view(),
        name="memory-meditation",
    ),
    path("attachments", apis.AttachmentCollectionApi.as_view(), name="attachments"),
    path(
        "attachments/<str:attachment_id>",
        apis.AttachmentDetailApi.as_view(),
        name="attachment-detail",
    ),
    path("goals", apis.GoalCollectionApi.as_view(), name="goals"),
    path("goals/<int:goal_id>", apis.GoalDetailApi.as_view(), name="goal"),
    path("memory/query", apis.MemoryQueryApi.as_view(), name="memory-query"),
    path("memory/proposals", apis.ProposalListApi.as_view(), name="memory-proposals"),
    path(
        "memory/proposals/<str:proposal_id>/accept",
        apis.ProposalDecideApi.as_view(accept=True),
        name="memory-proposal-accept",
    ),
    path(
        "memory/proposals/<str:proposal_id>/reject",
        apis.ProposalDecideApi.as_view(accept=False),
        name="memory-proposal-reject",
    ),
    path("memory/embed", apis.MemoryEmbedApi.as_view(), name="memory-embed"),
    path("memory/import", apis.MemoryImportApi.as_view(), name="memory-import"),
    path("memory/imports", apis.MemoryImportListApi.as_view(), name="memory-imports"),
    path(
        "memory/imports/<str:import_id>",
        apis.MemoryImportDetailApi.as_view(),
        name="memory-import-detail",
    ),
    path(
        "memory/<str:memory_id>", apis.MemoryDetailApi.as_view(), name="memory-detail"
    ),
    path(
        "memory/<str:memory_id>/history",
        apis.MemoryHistoryApi.as_view(),
        name="memory-history",
    ),
    path(
        "memory/<str:memory_id>/accesses",
        apis.MemoryAccessesApi.as_view(),
        name="memory-accesses",
    ),
    path(
        "memory/<str:memory_id>/revert",
        apis.MemoryRevertApi.as_view(),
        name="memory-revert",
    ),
    *lifecycle,
]
