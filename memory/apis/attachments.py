"""Attachments: upload a document (multipart), list, read with a download link, delete."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from kimberly import storage
from kimberly.api.pagination import PagePagination, PageQuery
from kimberly.api.schema import error_responses
from kimberly.api.serializers import StrictInput, iso_time, parse
from kimberly.context import context_from_request, current_user
from kimberly.middleware import upload_limit
from memory.attachments import extract, selectors, services
from memory.attachments.models import Attachment
from memory.constants import MAX_TAG_LENGTH, MAX_TAGS, Tier


class AttachmentUploadInput(StrictInput):
    json_types = False  # form fields are text

    file = serializers.FileField(
        allow_empty_file=True,  # the service answers empty_document
        help_text="text, Markdown, HTML or PDF; the type is read from the bytes",
    )
    tier = serializers.ChoiceField(choices=Tier.choices, default=Tier.LONG_TERM)
    tags = serializers.ListField(
        child=serializers.CharField(max_length=MAX_TAG_LENGTH),
        required=False,
        max_length=MAX_TAGS - services.SYSTEM_TAGS,
        help_text='added to every chunk, after "upload" and the file name',
    )


class AttachmentOutput(serializers.Serializer[Any]):
    id = serializers.CharField(help_text="att_<uuid>")
    filename = serializers.CharField(help_text="as uploaded, for display only")
    type = serializers.ChoiceField(choices=extract.KIND_NAMES)
    content_type = serializers.CharField()
    size_bytes = serializers.IntegerField()
    sha256 = serializers.CharField()
    tier = serializers.ChoiceField(choices=Tier.choices, help_text="of its chunks")
    tags = serializers.ListField(child=serializers.CharField())
    chunks = serializers.IntegerField(help_text="memories made from its text")
    text_chars = serializers.IntegerField()
    status = serializers.ChoiceField(
        choices=selectors.STATUSES,
        help_text="indexing: some chunks are not yet searchable by meaning",
    )
    created_at = serializers.DateTimeField()


class AttachmentDetailOutput(AttachmentOutput):
    download_url = serializers.URLField(help_text="signed; expires")
    download_expires_in = serializers.IntegerField(help_text="seconds")


def attachment_out(a: Attachment, *, status: str, link: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": a.public_id,
        "filename": a.filename,
        "type": extract.kind_of(a.content_type),
        "content_type": a.content_type,
        "size_bytes": a.size_bytes,
        "sha256": a.sha256,
        "tier": a.tier,
        "tags": list(a.tags),
        "chunks": a.chunks,
        "text_chars": a.text_chars,
        "status": status,
        "created_at": iso_time(a.created_at),
    }
    if link:
        expires = settings.STORAGE_URL_EXPIRE_SECONDS
        out["download_url"] = storage.signed_url(
            a.object_key, filename=a.filename, expires=expires
        )
        out["download_expires_in"] = expires
    return out


@upload_limit("ATTACHMENT_MAX_BYTES")
class AttachmentCollectionApi(APIView):
    """POST /v1/attachments (multipart upload), GET /v1/attachments (newest first)."""

    parser_classes = [MultiPartParser]
    pagination_class = PagePagination

    @extend_schema(
        request={"multipart/form-data": AttachmentUploadInput},
        responses={
            201: AttachmentDetailOutput,
            **error_responses(
                400,
                413,
                415,
                429,
                503,
                e400="validation_error; empty_document (no text in it); "
                "invalid_document (a damaged PDF)",
                e413="payload_too_large: over ATTACHMENT_MAX_BYTES",
                e415="unsupported_media_type: the body is not multipart/form-data, "
                "or the file is not text, Markdown, HTML or PDF",
                e429="quota_exceeded: its chunks would pass the tier's hard limit",
                e503="storage_unavailable: object storage is down; nothing was kept",
            ),
        },
    )
    def post(self, request: Request) -> Response:
        services.attachment_body_check(request.META.get("CONTENT_LENGTH"))
        data = parse(AttachmentUploadInput, request.data)
        user = current_user(request)
        attachment = services.attachment_upload(
            ctx=context_from_request(request),
            user=user,
            files=request.FILES.getlist("file"),
            tier=data["tier"],
            tags=data.get("tags", []),
        )
        status = selectors.attachment_status(attachment, user=user)
        return Response(attachment_out(attachment, status=status, link=True), 201)

    @extend_schema(parameters=[PageQuery], responses={200: AttachmentOutput(many=True)})
    def get(self, request: Request) -> Response:
        parse(PageQuery, request.query_params.dict())
        user = current_user(request)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(
            selectors.attachment_list(user=user), request, view=self
        )
        return paginator.get_paginated_response(
            [
                attachment_out(
                    a, status=selectors.attachment_status(a, user=user), link=False
                )
                for a in page
            ]
        )


class AttachmentDetailApi(APIView):
    """GET (with a signed download link) and DELETE /v1/attachments/{id}."""

    @extend_schema(responses={200: AttachmentDetailOutput, **error_responses(503)})
    def get(self, request: Request, attachment_id: str) -> Response:
        user = current_user(request)
        a = selectors.attachment_get(user=user, attachment_id=attachment_id)
        status = selectors.attachment_status(a, user=user)
        return Response(attachment_out(a, status=status, link=True))

    @extend_schema(responses={204: None})
    def delete(self, request: Request, attachment_id: str) -> Response:
        services.attachment_delete(
            ctx=context_from_request(request),
            user=current_user(request),
            attachment_id=attachment_id,
        )
        return Response(status=204)
