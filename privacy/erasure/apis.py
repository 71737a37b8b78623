"""HTTP API of erasure: ask for it (the account stops at once), read the receipt."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from kimberly.api.ratelimit import rate_limit_hit
from kimberly.api.schema import error_responses
from kimberly.api.serializers import QueryInput, StrictInput, parse
from kimberly.context import context_from_request, current_user, request_meta
from privacy.erasure import selectors, services
from privacy.erasure.models import Deletion


class VerificationSchema(serializers.Serializer[Any]):
    result = serializers.CharField(
        help_text="ok, found N, not_applicable (no such store yet) or kept"
    )
    found = serializers.IntegerField(required=False, help_text="what the probe found")
    note = serializers.CharField(required=False)


class StoreEntrySchema(serializers.Serializer[Any]):
    store = serializers.CharField(help_text="postgresql, redis, s3, data_key, audit")
    name = serializers.CharField(help_text="table, key pattern or object prefix")
    deleted = serializers.IntegerField()
    kept = serializers.IntegerField(required=False, help_text="audit tombstones")
    verification = VerificationSchema()


class ReceiptSchema(serializers.Serializer[Any]):
    deletion_id = serializers.CharField()
    user_id = serializers.CharField()
    requested_at = serializers.CharField()
    finished_at = serializers.CharField()
    verified = serializers.BooleanField(help_text="every probe found nothing")
    stores = StoreEntrySchema(many=True)


class DeletionApi(APIView):
    class DeleteInput(StrictInput):
        confirm = serializers.BooleanField(
            required=False,
            default=False,
            help_text="must be true: the account and all its data are erased",
        )

    class RequestedOutput(serializers.Serializer[Any]):
        deletion_id = serializers.CharField(source="deletion.public_id")
        receipt_token = serializers.CharField(
            help_text="shown only here: GET the receipt with it after the account "
            "is gone"
        )

    @extend_schema(
        request=DeleteInput,
        responses={
            202: OpenApiResponse(
                RequestedOutput,
                description="the tokens are revoked and the account deactivated; "
                "the erasure runs as a job",
            ),
            **error_responses(400, e400="confirmation_required: confirm is not true"),
        },
    )
    def post(self, request: Request) -> Response:
        data = parse(self.DeleteInput, request.data)
        requested = services.deletion_request(
            ctx=context_from_request(request),
            user=current_user(request),
            confirm=data["confirm"],
        )
        return Response(self.RequestedOutput(requested).data, status=202)


class DeletionDetailApi(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    class TokenQuery(QueryInput):
        receipt_token = serializers.CharField(max_length=256)

    class DeletionOutput(serializers.Serializer[Any]):
        deletion_id = serializers.CharField(source="public_id")
        status = serializers.ChoiceField(choices=Deletion.State.choices)
        requested_at = serializers.DateTimeField()
        finished_at = serializers.DateTimeField(allow_null=True)
        receipt = serializers.SerializerMethodField()

        @extend_schema_field(ReceiptSchema(allow_null=True))
        def get_receipt(self, obj: Deletion) -> dict[str, Any] | None:
            return selectors.deletion_receipt(obj)

    @extend_schema(
        parameters=[TokenQuery],
        responses={
            200: DeletionOutput,
            **error_responses(
                400, 404, 429, e404="No such deletion, or not this receipt token."
            ),
        },
        auth=[],
    )
    def get(self, request: Request, deletion_id: str) -> Response:
        # No login here, so the per-user API limits do not apply: per address.
        rate_limit_hit(
            scope="receipt_ip",
            ident=request_meta(request).ip,
            limit=settings.LOGIN_RATE_PER_IP,
            window_seconds=settings.LOGIN_RATE_WINDOW_SECONDS,
        )
        query = parse(self.TokenQuery, request.query_params)
        deletion = selectors.deletion_get(
            deletion_id=deletion_id, receipt_token=query["receipt_token"]
        )
        return Response(self.DeletionOutput(deletion).data)
