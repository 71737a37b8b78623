"""The chat screen's pages and fragments (included by web/urls.py)."""

from django.urls import path

from web.views import chat

urlpatterns = [
    path("chat", chat.chat_page, name="chat"),
    path("chat/send", chat.chat_send, name="chat-send"),
    path("chat/stream", chat.chat_stream, name="chat-stream"),
    path("chat/proposals", chat.proposals_poll, name="chat-proposals"),
    path("chat/pending/<str:message_id>", chat.chat_reply_poll, name="chat-reply-poll"),
    path(
        "chat/proposals/<str:proposal_id>/<str:decision>",
        chat.proposal_decision,
        name="chat-proposal-decision",
    ),
    path(
        "chat/replies/<str:message_id>/<str:memory_id>/<str:action>",
        chat.rail_action,
        name="chat-rail-action",
    ),
    path(
        "chat/<str:conversation_id>",
        chat.chat_conversation,
        name="chat-conversation",
    ),
]
