from django.urls import path

from chat import apis

urlpatterns = [
    path("chat", apis.ChatApi.as_view(), name="chat"),
    path(
        "chat/conversations",
        apis.ConversationListApi.as_view(),
        name="chat-conversations",
    ),
    path(
        "chat/conversations/<str:conversation_id>",
        apis.ConversationDetailApi.as_view(),
        name="chat-conversation",
    ),
    path(
        "chat/conversations/<str:conversation_id>/transcript",
        apis.TranscriptApi.as_view(),
        name="chat-transcript",
    ),
    path(
        "chat/messages/<str:message_id>/context",
        apis.MessageContextApi.as_view(),
        name="chat-message-context",
    ),
]
