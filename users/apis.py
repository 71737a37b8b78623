"""HTTP API for accounts: signup, login, the user's own profile and settings."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from kimberly.api.schema import error_responses
from kimberly.api.serializers import StrictInput, documented_json, parse
from kimberly.context import context_from_request, current_user, request_meta
from users import services
from users.models import User


class TokenOutput(serializers.Serializer):
    token = serializers.CharField()
    expires_in = serializers.IntegerField(help_text="seconds until the token expires")


class CredentialsInput(StrictInput):
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=512, trim_whitespace=False)


class SignupApi(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=CredentialsInput,
        responses={
            201: TokenOutput,
            **error_responses(400, 429, e400="invalid, email_taken or weak_password"),
        },
        auth=[],
    )
    def post(self, request: Request) -> Response:
        data = parse(CredentialsInput, request.data)
        issued = services.user_signup(**data, meta=request_meta(request))
        return Response(TokenOutput(issued).data, status=201)


class LoginApi(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    class LoginInput(StrictInput):
        email = serializers.CharField(max_length=254)
        password = serializers.CharField(max_length=512, trim_whitespace=False)

    @extend_schema(
        request=LoginInput,
        responses={
            200: TokenOutput,
            **error_responses(401, 429, e401="Email or password is wrong."),
        },
        auth=[],
    )
    def post(self, request: Request) -> Response:
        data = parse(self.LoginInput, request.data)
        issued = services.user_login(**data, meta=request_meta(request))
        return Response(TokenOutput(issued).data)


class UserOutput(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = [
            "id",
            "email",
            "date_joined",
            "embedding_enabled",
            "consent_telemetry",
            "memory_auto_accept",
            "meditation_weights",
            "time_zone",
            "webhook_url",
        ]


class UserSettingsOutput(UserOutput):
    """What PUT /v1/user answers: the user, and the webhook secret when this
    change made one."""

    # The source is no attribute of User: serializing a user never shows the
    # stored secret; the view adds it from the service's answer.
    webhook_secret = serializers.CharField(
        source="new_webhook_secret",
        required=False,  # not read_only: the schema would then list it as required
        help_text="the key that signs webhook events; only in the answer that made"
        " it (a new webhook_url, or rotate_webhook_secret), never shown again",
    )

    class Meta(UserOutput.Meta):
        fields = [*UserOutput.Meta.fields, "webhook_secret"]


class MeditationWeightsInput(StrictInput):
    """What memory.meditation.normalize_weights accepts."""

    relevance_to_goals = serializers.FloatField(min_value=0, max_value=1)
    emotional_weight = serializers.FloatField(min_value=0, max_value=1)
    predictive_value = serializers.FloatField(min_value=0, max_value=1)
    recency_freq = serializers.FloatField(min_value=0, max_value=1)


class UserApi(APIView):
    class UserSettingsInput(StrictInput):
        embedding_enabled = serializers.BooleanField(required=False)
        consent_telemetry = serializers.BooleanField(required=False)
        memory_auto_accept = serializers.BooleanField(required=False)
        meditation_weights = documented_json(
            MeditationWeightsInput,
            required=False,
            help_text="each from 0 to 1, not all 0; stored scaled to sum 1",
        )
        time_zone = serializers.CharField(
            max_length=64, required=False, help_text="IANA name, e.g. Europe/Paris"
        )
        webhook_url = serializers.CharField(
            max_length=2000,
            required=False,
            allow_blank=True,
            help_text="https URL that receives signed agent events (reminders);"
            " empty removes the webhook. A new URL answers with a new webhook_secret.",
        )
        rotate_webhook_secret = serializers.BooleanField(
            required=False, help_text="true: a new webhook_secret, in the answer"
        )

    @extend_schema(responses={200: UserOutput})
    def get(self, request: Request) -> Response:
        return Response(UserOutput(request.user).data)

    @extend_schema(
        request=UserSettingsInput,
        responses={
            200: UserSettingsOutput,
            **error_responses(
                400,
                e400="validation_error, invalid_time_zone, invalid_webhook_url or"
                " webhook_destination_refused",
            ),
        },
    )
    def put(self, request: Request) -> Response:
        data = parse(self.UserSettingsInput, request.data)
        change = services.user_update_settings(
            ctx=context_from_request(request),
            user=current_user(request),
            **data,
        )
        body = UserOutput(change.user).data
        if change.webhook_secret:
            body["webhook_secret"] = change.webhook_secret
        return Response(body)
