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
        ]


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

    @extend_schema(responses={200: UserOutput})
    def get(self, request: Request) -> Response:
        return Response(UserOutput(request.user).data)

    @extend_schema(request=UserSettingsInput, responses={200: UserOutput})
    def put(self, request: Request) -> Response:
        data = parse(self.UserSettingsInput, request.data)
        user = services.user_update_settings(
            ctx=context_from_request(request),
            user=current_user(request),
            **data,
        )
        return Response(UserOutput(user).data)
