"""HTTP API for chat: authenticate → parse → one service/selector → serialize."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import selectors, services, transcripts
from chat.models import Conversation, Message
from chat.services import MAX_MESSAGE_CHARS, ChatResult
from kimberly.api.errors import ApplicationError
from kimberly.api.exceptions import error_body
from kimberly.api.pagination import PagePagination, PageQuery, page_serializer
from kimberly.api.renderers import EventStreamRenderer, sse_event
from kimberly.api.schema import EventSerializer, error_responses
from kimberly.api.serializers import NonBlank, StrictInput, iso_time, parse
from kimberly.context import context_from_request, current_user


class MessageOutput(serializers.Serializer[Any]):
    id = serializers.CharField(help_text="msg_<uuid>")
    role = serializers.ChoiceField(choices=Message.Role.choices)
    content = serializers.CharField()
    created_at = serializers.DateTimeField()


def message_out(m: Message) -> dict[str, Any]:
    return {
        "id": m.public_id,
        "role": m.role,
        "content": m.content,
        "created_at": iso_time(m.created_at),
    }


class UsageOutput(serializers.Serializer[Any]):
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    model = serializers.CharField()
    runner = serializers.ChoiceField(
        choices=["openai", "offline"],
        help_text="offline: no language model is configured (LLM_BASE_URL unset)",
    )


class ContextOutput(serializers.Serializer[Any]):
    memory_id = serializers.CharField()
    tier = serializers.CharField()
    score = serializers.FloatField()
    relevance = serializers.FloatField()
    why = serializers.CharField()


class ChatOutput(serializers.Serializer[Any]):
    conversation_id = serializers.CharField()
    message = MessageOutput()
    usage = UsageOutput()
    context = ContextOutput(many=True)  # type: ignore[assignment]


def chat_out(result: ChatResult) -> dict[str, Any]:
    reply = result.reply
    return {
        "conversation_id": result.exchange.conversation.public_id,
        "message": message_out(reply),
        "usage": {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "model": reply.model,
            "runner": reply.runner,
        },
        "context": [
            {
                "memory_id": r.memory_id,
                "tier": r.tier,
                "score": r.score,
                "relevance": r.relevance,
                "why": r.why,
            }
            for r in result.exchange.assembled.used
        ],
    }


def _events(stream: Iterator[str | ChatResult | ApplicationError]) -> Iterator[str]:
    for piece in stream:
        if isinstance(piece, str):
            yield sse_event("delta", {"content": piece})
        elif isinstance(piece, ApplicationError):
            yield sse_event(
                "error",
                error_body(piece.code, piece.message, piece.status, piece.details),
            )
        else:
            yield sse_event("done", chat_out(piece))


class ChatApi(APIView):
    """POST /v1/chat: a message in, Kimberly's reply and the memories it used out."""

    renderer_classes = [JSONRenderer, EventStreamRenderer]

    class ChatInput(StrictInput):
        message = serializers.CharField(
            trim_whitespace=False,
            max_length=MAX_MESSAGE_CHARS,
            validators=[NonBlank()],
        )
        conversation_id = serializers.CharField(required=False, max_length=64)
        save_to_memory = serializers.BooleanField(default=False)
        stream = serializers.BooleanField(default=False)

    @extend_schema(
        request=ChatInput,
        responses={
            (200, "application/json"): ChatOutput,
            (200, "text/event-stream"): OpenApiResponse(
                EventSerializer,
                description="with stream: `delta` events, then one `done` event"
                " holding the whole JSON body (or an `error` event)",
            ),
            **error_responses(
                404,
                409,
                429,
                502,
                504,
                e404="conversation_id is not one of yours",
                e409="conversation_deleted: deleted while Kimberly was answering",
                e429="rate limited, or save_to_memory over quota",
            ),
        },
    )
    def post(self, request: Request) -> Response | StreamingHttpResponse:
        data = parse(self.ChatInput, request.data)
        stream = data.pop("stream")
        ctx, user = context_from_request(request), current_user(request)
        if not stream:
            result = services.chat_reply(ctx=ctx, user=user, **data)
            return Response(chat_out(result))
        exchange = services.chat_begin(ctx=ctx, user=user, **data)
        response = StreamingHttpResponse(
            _events(services.chat_stream(ctx=ctx, user=user, exchange=exchange)),
            content_type="text/event-stream; charset=utf-8",
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # proxies: pass each event at once
        return response


class ConversationOutput(serializers.Serializer[Any]):
    id = serializers.CharField(help_text="conv_<uuid>")
    title = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    message_count = serializers.IntegerField()


def conversation_out(c: Conversation) -> dict[str, Any]:
    return {
        "id": c.public_id,
        "title": c.title,
        "created_at": iso_time(c.created_at),
        "updated_at": iso_time(c.updated_at),
        "message_count": c.message_count,
    }


class ConversationListApi(APIView):
    """GET /v1/chat/conversations: the user's conversations, latest first."""

    pagination_class = PagePagination

    @extend_schema(
        parameters=[PageQuery], responses={200: ConversationOutput(many=True)}
    )
    def get(self, request: Request) -> Response:
        parse(PageQuery, request.query_params.dict())
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(
            selectors.conversations_for(user=current_user(request)), request, self
        )
        return paginator.get_paginated_response([conversation_out(c) for c in page])


class ConversationDetailOutput(ConversationOutput):
    messages = page_serializer(MessageOutput, "MessagePage")


class ConversationDetailApi(APIView):
    """GET (with its messages, oldest first, paginated) and DELETE a conversation."""

    @extend_schema(
        parameters=[PageQuery],
        responses={200: ConversationDetailOutput, **error_responses(404)},
    )
    def get(self, request: Request, conversation_id: str) -> Response:
        parse(PageQuery, request.query_params.dict())
        conversation = selectors.conversation_get(
            user=current_user(request), conversation_id=conversation_id
        )
        paginator = PagePagination()
        page = paginator.paginate_queryset(
            selectors.messages_of(conversation=conversation), request, self
        )
        messages = paginator.get_paginated_response([message_out(m) for m in page])
        return Response({**conversation_out(conversation), "messages": messages.data})

    @extend_schema(responses={204: None, **error_responses(404)})
    def delete(self, request: Request, conversation_id: str) -> Response:
        services.conversation_delete(
            ctx=context_from_request(request),
            user=current_user(request),
            conversation_id=conversation_id,
        )
        return Response(status=204)


class TranscriptOutput(serializers.Serializer[Any]):
    download_url = serializers.CharField(help_text="signed, short-lived")
    expires_in = serializers.IntegerField(help_text="seconds")
    messages = serializers.IntegerField()


class TranscriptApi(APIView):
    """GET /v1/chat/conversations/{id}/transcript: a signed link to its JSON lines."""

    @extend_schema(responses={200: TranscriptOutput, **error_responses(404, 503)})
    def get(self, request: Request, conversation_id: str) -> Response:
        conversation = selectors.conversation_get(
            user=current_user(request), conversation_id=conversation_id
        )
        link = transcripts.transcript_link(conversation)
        return Response(
            {
                "download_url": link.url,
                "expires_in": link.expires_in,
                "messages": link.messages,
            }
        )


class UsedMemoryOutput(ContextOutput):
    rank = serializers.IntegerField()
    status = serializers.ChoiceField(
        choices=["active", "archived", "hidden", "deleted"],
        help_text="where it stands now (hidden: its consent was withdrawn)",
    )
    edited = serializers.BooleanField(help_text="changed since the reply used it")


class MessageContextOutput(serializers.Serializer[Any]):
    message_id = serializers.CharField()
    conversation_id = serializers.CharField()
    context = UsedMemoryOutput(many=True)  # type: ignore[assignment]


class MessageContextApi(APIView):
    """GET /v1/chat/messages/{id}/context: the exact memories a reply was given."""

    @extend_schema(responses={200: MessageContextOutput, **error_responses(404)})
    def get(self, request: Request, message_id: str) -> Response:
        user = current_user(request)
        message = selectors.message_get(user=user, message_id=message_id)
        used = selectors.message_context(user=user, message=message)
        return Response(
            {
                "message_id": message.public_id,
                "conversation_id": message.conversation.public_id,
                "context": [
                    {
                        "memory_id": f"mem_{u.used.memory_id}",
                        "tier": u.used.tier,
                        "score": u.used.score,
                        "relevance": u.used.relevance,
                        "why": u.used.why,
                        "rank": u.used.rank,
                        "status": u.status,
                        "edited": u.edited,
                    }
                    for u in used
                ],
            }
        )
