"""Meditation on demand, its forecast, and the runs with their decisions."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from kimberly.api.pagination import PagePagination, PageQuery
from kimberly.api.serializers import StrictInput, parse
from kimberly.context import current_user
from memory import meditation, selectors
from memory.apis.schemas import (
    ForecastOutput,
    MeditationDetailOutput,
    MeditationRunOutput,
    ScoreRecordOutput,
)


class MeditateInput(StrictInput):
    dry_run = serializers.BooleanField(default=False)


class MeditateApi(APIView):
    @extend_schema(request=MeditateInput, responses={202: MeditationRunOutput})
    def post(self, request: Request) -> Response:
        data = parse(MeditateInput, request.data)
        run = meditation.meditation_queue(
            user=current_user(request), dry_run=data["dry_run"]
        )
        return Response(MeditationRunOutput(run).data, status=202)


class ForecastFilters(PageQuery):
    as_of = serializers.DateTimeField(required=False)


class ForecastApi(APIView):
    """GET /v1/memory/forecast: what a run would do now, and why; changes nothing.

    Its `as_of` passed back (`?as_of=...&page=2`) gives the next page of the same
    forecast; `run_id` is null, as no run is kept.
    """

    @extend_schema(parameters=[ForecastFilters], responses={200: ForecastOutput})
    def get(self, request: Request) -> Response:
        data = parse(ForecastFilters, request.query_params.dict())
        forecast = meditation.meditation_forecast(
            user=current_user(request), as_of=data.get("as_of")
        )
        paginator = PagePagination()
        page = paginator.paginate_queryset(forecast.decisions, request, view=self)
        decisions = paginator.get_paginated_response(
            ScoreRecordOutput(page, many=True).data
        )
        return Response(
            {**MeditationRunOutput(forecast.run).data, "decisions": decisions.data}
        )


class MeditationListApi(APIView):
    pagination_class = PagePagination

    @extend_schema(responses={200: MeditationRunOutput(many=True)})
    def get(self, request: Request) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(
            selectors.meditation_runs_for(user=current_user(request)),
            request,
            view=self,
        )
        return paginator.get_paginated_response(
            MeditationRunOutput(page, many=True).data
        )


class MeditationDetailApi(APIView):
    @extend_schema(parameters=[PageQuery], responses={200: MeditationDetailOutput})
    def get(self, request: Request, run_id: int) -> Response:
        run = selectors.meditation_run_get(user=current_user(request), run_id=run_id)
        paginator = PagePagination()
        page = paginator.paginate_queryset(
            run.scores.order_by("score", "item_id"), request, view=self
        )
        scores = paginator.get_paginated_response(
            ScoreRecordOutput(page, many=True).data
        )
        return Response({**MeditationRunOutput(run).data, "scores": scores.data})
