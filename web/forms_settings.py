"""What the Settings screen's forms accept (shape only: the services decide)."""

from __future__ import annotations

from django import forms

from privacy.exports.models import DataExport


class ProfileForm(forms.Form):
    time_zone = forms.CharField(label="Time zone", max_length=64)


class WeightsForm(forms.Form):
    relevance_to_goals = forms.FloatField(label="Relevance to your goals")
    emotional_weight = forms.FloatField(label="Emotional weight")
    predictive_value = forms.FloatField(label="Predictive value")
    recency_freq = forms.FloatField(label="Recency and frequency")


class MemorySettingsForm(forms.Form):
    embedding_enabled = forms.BooleanField(label="Embeddings", required=False)
    memory_auto_accept = forms.BooleanField(label="Auto-accept", required=False)


class GoalForm(forms.Form):
    text = forms.CharField(label="Goal", max_length=1000)
    tags = forms.CharField(label="Tags", max_length=2000, required=False)


class ExportForm(forms.Form):
    format = forms.ChoiceField(label="Format", choices=DataExport.Format.choices)


class DeleteAccountForm(forms.Form):
    confirm = forms.BooleanField(label="Confirm", required=False)
