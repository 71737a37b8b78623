"""The privacy app in the admin: the system's retention defaults (editable by
administrators; users' own values stay theirs) and the enforcement passes."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from kimberly.admin_views import ReadOnlyAdminMixin
from privacy.retention.models import RetentionPolicy, RetentionRun


class SystemPolicyForm(forms.ModelForm[RetentionPolicy]):
    class Meta:
        model = RetentionPolicy
        fields = ["data_type", "days"]

    def clean_data_type(self) -> str:
        data_type = str(self.cleaned_data["data_type"])
        taken = RetentionPolicy.objects.filter(user__isnull=True, data_type=data_type)
        if taken.exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError("This data type has a system value already.")
        return data_type


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(admin.ModelAdmin[RetentionPolicy]):
    """System defaults only: a row here overrides RETENTION_DEFAULT_DAYS for
    everyone; a user's own (shorter) value is set through the API."""

    list_display = ["data_type", "days", "updated_at", "updated_by"]
    form = SystemPolicyForm

    def get_queryset(self, request: HttpRequest) -> QuerySet[RetentionPolicy]:
        return super().get_queryset(request).filter(user__isnull=True)

    def save_model(
        self, request: HttpRequest, obj: Any, form: Any, change: bool
    ) -> None:
        obj.user = None
        obj.updated_by = f"admin:{request.user.pk}"[:64]
        super().save_model(request, obj, form, change)


@admin.register(RetentionRun)
class RetentionRunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin[RetentionRun]):
    list_display = ["data_type", "finished_at", "cutoff", "deleted"]
    list_filter = ["data_type"]
