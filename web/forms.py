"""What the UI's forms accept, parsed into plain values; the services decide the rest.

A form only checks shape (a date is a date, a choice is one of the choices);
every rule about memories (size, quota, tags, consent) is the services' own,
and their refusals reach the page through web.views.base like any other.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django import forms
from django.conf import settings
from django.http import QueryDict

from agents.registry import AGENT_TYPES
from chat.services import MAX_MESSAGE_CHARS
from kimberly.api.errors import ValidationFailed
from memory.constants import Status, Tier
from memory.imports.models import MemoryImport
from memory.retrieval import MAX_QUERY_CHARS


def parse(
    form_class: type[forms.Form], data: QueryDict, files: Any = None
) -> dict[str, Any]:
    """The form's cleaned values, or 400 validation_error naming each bad field."""
    form = form_class(data, files)
    if form.is_valid():
        return form.cleaned_data
    fields = {name: [str(e) for e in errors] for name, errors in form.errors.items()}
    name, messages = next(iter(fields.items()))
    label = form.fields[name].label if name in form.fields else name
    raise ValidationFailed(f"{label}: {messages[0]}", details={"fields": fields})


def tag_list(raw: str) -> list[str]:
    """ "a, b ,c" → ["a", "b", "c"] (empty entries dropped)."""
    return [t.strip() for t in raw.split(",") if t.strip()]


class LoginForm(forms.Form):
    email = forms.EmailField(label="Email", max_length=254)
    password = forms.CharField(
        label="Password", max_length=512, strip=False, widget=forms.PasswordInput
    )


TIER_CHOICES = [("", "Any tier"), *Tier.choices]
STATUS_CHOICES = [
    (Status.ACTIVE.value, "Active"),
    (Status.ARCHIVED.value, "Archived"),
    ("all", "Active and archived"),
]


class MemoryFilterForm(forms.Form):
    tier = forms.ChoiceField(label="Tier", choices=TIER_CHOICES, required=False)
    tags = forms.CharField(label="Tags", max_length=2000, required=False)
    status = forms.ChoiceField(label="Status", choices=STATUS_CHOICES, required=False)
    since = forms.DateField(label="From", required=False)
    until = forms.DateField(label="To", required=False)
    q = forms.CharField(
        label="Find by meaning", max_length=MAX_QUERY_CHARS, required=False
    )
    page = forms.IntegerField(min_value=1, required=False)


def day_start(
    day: date | None, tz_name: str, *, after: bool = False
) -> datetime | None:
    """Midnight starting `day` in the user's time zone (the next day's with
    `after`, so a "to" date includes the whole day)."""
    if day is None:
        return None
    if after:
        day += timedelta(days=1)
    return datetime.combine(day, time.min, tzinfo=ZoneInfo(tz_name))


class MemoryAddForm(forms.Form):
    tier = forms.ChoiceField(label="Tier", choices=Tier.choices)
    content = forms.CharField(label="Content", strip=False, widget=forms.Textarea)
    tags = forms.CharField(label="Tags", max_length=2000, required=False)
    sensitive = forms.BooleanField(label="Sensitive", required=False)


class MemoryEditForm(forms.Form):
    tier = forms.ChoiceField(label="Tier", choices=Tier.choices)
    content = forms.CharField(label="Content", strip=False, widget=forms.Textarea)
    tags = forms.CharField(label="Tags", max_length=2000, required=False)


class AttachmentUploadForm(forms.Form):
    # empty files pass here: the service answers empty_document
    file = forms.FileField(label="Document", allow_empty_file=True)
    tier = forms.ChoiceField(label="Tier", choices=Tier.choices, required=False)
    tags = forms.CharField(label="Tags", max_length=2000, required=False)


class RevertForm(forms.Form):
    version = forms.IntegerField(label="Version", min_value=1, max_value=2**31 - 1)


# --- Imports (web/views/memory_imports.py) ---------------------------------------
# How an import's format is named on the screen (the form's choices too).
FORMAT_NAMES: dict[str, str] = {
    MemoryImport.Format.CHATGPT: "ChatGPT export (conversations.json)",
    MemoryImport.Format.KIMBERLY: "Kimberly transcript (JSON lines)",
    MemoryImport.Format.JSON: "JSON list of memories",
}
assert set(FORMAT_NAMES) == set(MemoryImport.Format.values)


class ImportForm(forms.Form):
    file = forms.FileField(label="Export file", allow_empty_file=True)
    format = forms.ChoiceField(
        label="Format",
        choices=[("", "Detect from the file"), *FORMAT_NAMES.items()],
        required=False,
    )
    tier = forms.ChoiceField(label="Tier", choices=Tier.choices)


# Tonight's forecast (web/views/memory_forecast.py): `as_of` and `page` of the
# API's own paging (GET /v1/memory/forecast).
class ForecastForm(forms.Form):
    as_of = forms.DateTimeField(label="As of", required=False)
    page = forms.IntegerField(label="Page", min_value=1, required=False)


# The choices the memory templates offer (filters, add, edit).
CHOICES = {
    "tier_choices": TIER_CHOICES,
    "status_choices": STATUS_CHOICES,
    "add_tier_choices": Tier.choices,
    "import_format_choices": ImportForm.base_fields["format"].choices,  # type: ignore[attr-defined]
}


# --- Agents (web/views/agents.py) ---------------------------------------------


class AgentRunForm(forms.Form):
    agent = forms.ChoiceField(
        label="Agent",
        choices=[("", "Choose from the text"), *((n, n) for n in AGENT_TYPES)],
        required=False,
    )
    task = forms.CharField(label="Task", max_length=settings.AGENT_TASK_TEXT_MAX_CHARS)
    preview = forms.BooleanField(label="Preview first", required=False)


class AgentSwitchForm(forms.Form):
    enabled = forms.TypedChoiceField(
        label="On",
        choices=[("true", "on"), ("false", "off")],
        coerce=lambda v: v == "true",
    )


# --- Chat (web/views/chat.py) -------------------------------------------------


class ChatForm(forms.Form):
    message = forms.CharField(
        label="Message",
        strip=False,
        max_length=MAX_MESSAGE_CHARS,
        widget=forms.Textarea,
    )
    conversation_id = forms.CharField(max_length=64, required=False)
    save_to_memory = forms.BooleanField(label="Save to memory", required=False)


class ReplyPollForm(forms.Form):
    until = forms.IntegerField(min_value=0, required=False)


class ProposalPollForm(forms.Form):
    seen = forms.IntegerField(min_value=0, required=False)
    until = forms.IntegerField(min_value=0, required=False)
