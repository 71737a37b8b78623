"""The memory manager: filters, quota bars, the list, adding, in-place actions,
and the detail panel with editing and history. Each view parses its input,
makes one call into memory's services or selectors, and renders a page or an
htmx fragment."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import push_url

from audit.selectors import audit_events_for_user
from kimberly.api.errors import NotFound, invalid_field
from kimberly.context import context_from_request
from memory import retrieval, selectors, services
from memory.constants import Status
from memory.outputs import bulk_out
from users import consents
from users.models import User
from web.forms import (
    CHOICES,
    MemoryAddForm,
    MemoryEditForm,
    MemoryFilterForm,
    RevertForm,
    day_start,
    parse,
    tag_list,
)
from web.presenters import memory_row, quota_bars, version_row
from web.views.base import announce, render, user_view

Counts = Mapping[tuple[str, str], int]  # items per (tier, status)

# The in-place actions: the service action, and what is said when it is done.
ACTIONS = {
    "archive": "Memory archived.",
    "restore": "Memory restored.",
    "protect": "Memory protected.",
    "unprotect": "Protection removed.",
}
assert set(ACTIONS) == set(services.LIFECYCLE_ACTIONS)
# After an action the keyboard lands on the button that undoes it.
UNDO = {
    "archive": "restore",
    "restore": "archive",
    "protect": "unprotect",
    "unprotect": "protect",
}


class _CountedPaginator(Paginator):
    """A paginator told its count (the page has counted the rows already)."""

    def __init__(self, object_list: Any, per_page: int, *, count: int) -> None:
        super().__init__(object_list, per_page)
        self._known = count

    @cached_property
    def count(self) -> int:
        return self._known


def _paginator(
    qs: Any, filters: selectors.MemoryFilters, counts: Counts | None
) -> Paginator:
    """The list's paginator. When the page has the per-tier counts and only tier
    and status filter the list, its size is their sum: no second COUNT."""
    size = settings.WEB_MEMORY_PAGE_SIZE
    plain = selectors.MemoryFilters(
        tier=filters.tier, status=filters.status, ordering=filters.ordering
    )
    if counts is None or filters != plain:  # filtered by more than tier and status
        return Paginator(qs, size)
    n = sum(
        v
        for (tier, status), v in counts.items()
        if filters.tier in (None, tier) and filters.status in ("all", status)
    )
    return _CountedPaginator(qs, size, count=n)


def _listing(
    request: HttpRequest, user: User, counts: Counts | None = None
) -> dict[str, Any]:
    """The list for the filters in the query string: a page of memories, or
    with text the hybrid query's ranked hits (as POST /v1/memory/query)."""
    data = parse(MemoryFilterForm, request.GET)
    tags = tag_list(data["tags"] or "")
    since = day_start(data["since"], user.time_zone)
    until = day_start(data["until"], user.time_zone, after=True)
    query = {k: v for k, v in request.GET.items() if k != "page" and v}
    context: dict[str, Any] = {"filters": data, "query": query}
    if data["q"]:
        result = retrieval.memory_query(
            user=user,
            query=data["q"],
            tier=data["tier"] or "any",
            top_k=settings.WEB_MEMORY_SEARCH_HITS,
            filters=retrieval.QueryFilters(tags=tags or None, since=since, until=until),
            request_id=getattr(request, "request_id", ""),
            # a GET (any site can make one): it must not count as using them
            log=False,
        )
        rows = [
            memory_row(h.item, relevance=round(h.final, 3), why=h.why)
            for h in result.hits
        ]
        return {**context, "rows": rows, "searching": True}
    filters = selectors.MemoryFilters(
        tier=data["tier"] or None,
        tags=tags or None,
        status=data["status"] or Status.ACTIVE,
        since=since,
        until=until,
    )
    qs = selectors.memory_list(user=user, filters=filters)
    page = _paginator(qs, filters, counts).get_page(data["page"] or 1)
    more = urlencode({**query, "page": page.number + 1}) if page.has_next() else ""
    return {
        **context,
        "rows": [memory_row(i) for i in page.object_list],
        "page": page,
        "more": more,
    }


def quota_context(user: User, counts: Counts | None = None) -> dict[str, Any]:
    """The quota bars (the memory screen, and any fragment that changes usage)."""
    return {"quotas": quota_bars(selectors.tier_usage(user=user, counts=counts))}


@require_GET
@user_view
def memory_page(request: HttpRequest, user: User) -> HttpResponse:
    # One grouped count serves the quota bars and the list's size.
    counts = selectors.visible_counts(user=user)
    context = {
        "section": "memory",
        **CHOICES,
        **_listing(request, user, counts),
        **quota_context(user, counts),
    }
    return render(request, "web/memory/page.html", context)


@require_GET
@user_view
def memory_list(request: HttpRequest, user: User) -> HttpResponse:
    """The list alone, for the filter form; the address bar shows the page URL
    with the same filters, so reloading or sharing it gives the same list."""
    context = _listing(request, user)
    response = render(request, "web/memory/_list.html", context)
    query = urlencode(context["query"])
    return push_url(response, reverse("web:memory") + (f"?{query}" if query else ""))


@require_POST
@user_view
def memory_add(request: HttpRequest, user: User) -> HttpResponse:
    data = parse(MemoryAddForm, request.POST)
    result = services.memory_create(
        ctx=context_from_request(request),
        user=user,
        tier=data["tier"],
        content=data["content"],
        metadata={"tags": tag_list(data["tags"]), "sensitive": data["sensitive"]},
    )
    context = {"row": memory_row(result.item), "added": True, **quota_context(user)}
    return render(request, "web/memory/_added.html", context, said="Memory saved.")


@require_POST
@user_view
def memory_action(
    request: HttpRequest, user: User, memory_id: str, action: str
) -> HttpResponse:
    """Archive, restore, protect or unprotect in place: the row again."""
    if action not in ACTIONS:
        raise NotFound(f"No action {action}.")
    item = services.memory_lifecycle(
        ctx=context_from_request(request), user=user, memory_id=memory_id, action=action
    )
    context = {"row": memory_row(item), "focus": UNDO[action], **quota_context(user)}
    return render(request, "web/memory/_changed.html", context, said=ACTIONS[action])


# The bulk actions the list offers on its selected rows (memory_bulk has more).
BULK = {
    "archive": "archived",
    "restore": "restored",
    "delete": "deleted",
    "export": "exported",
}


@require_POST
@user_view
def memory_bulk(request: HttpRequest, user: User) -> HttpResponse:
    """Archive, restore, delete or export the selected rows, all or none (as
    POST /v1/memory/bulk, audited there); the rows change in place, and an
    export is a JSON download of the API's own answer."""
    action = request.POST.get("action", "")
    if action not in BULK:
        raise invalid_field("action", f"must be one of {', '.join(BULK)}")
    result = services.memory_bulk(
        ctx=context_from_request(request),
        user=user,
        action=action,
        ids=request.POST.getlist("ids"),
    )
    n = len(result.items)
    said = f"{n} memor{'y' if n == 1 else 'ies'} {BULK[action]}."
    if action == "export":
        return _download(bulk_out(result), said)
    rows = [memory_row(i) for i in result.items]
    context = {"rows": rows, "deleted": action == "delete", **quota_context(user)}
    return render(request, "web/memory/_bulk.html", context, said=said)


def _download(body: dict[str, Any], said: str) -> HttpResponse:
    """The exported memories as a JSON file to save (app.js fetches it, saves
    it and says `said`; without scripts the form's plain POST downloads it)."""
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response = JsonResponse(body, json_dumps_params={"ensure_ascii": False})
    response["Content-Disposition"] = (
        f'attachment; filename="kimberly-memories-{stamp}.json"'
    )
    response["Cache-Control"] = "no-store"
    announce(response, said)
    return response


@require_POST
@user_view
def memory_delete(request: HttpRequest, user: User, memory_id: str) -> HttpResponse:
    services.memory_delete(
        ctx=context_from_request(request), user=user, memory_id=memory_id
    )
    context = {"deleted": memory_id, **quota_context(user)}
    return render(request, "web/memory/_deleted.html", context, said="Memory deleted.")


# The detail panel shows this many of the newest accesses and audit events.
DETAIL_ROWS = 20


def _detail(user: User, memory_id: str) -> dict[str, Any]:
    """The memory, its history, its audit events and accesses (as GET
    /v1/memory/{id}/accesses), and where its consent stands."""
    item, versions = selectors.memory_history(user=user, memory_id=memory_id)
    accesses = selectors.memory_accesses(user=user, memory_id=memory_id)
    events = audit_events_for_user(user_id=user.pk, target=("memory", item.public_id))
    return {
        **CHOICES,
        "row": memory_row(item),
        "versions": [version_row(v) for v in reversed(versions)],
        "accesses": list(accesses[:DETAIL_ROWS]),
        "events": list(events[:DETAIL_ROWS]),
        "consent": {
            "needed": item.sensitive,
            "given": consents.has_consent(user, consents.Purpose.SENSITIVE_MEMORY),
            "visible": item.consent,
        },
    }


@require_GET
@user_view
def memory_detail(request: HttpRequest, user: User, memory_id: str) -> HttpResponse:
    return render(request, "web/memory/_detail.html", _detail(user, memory_id))


def _changed_detail(
    request: HttpRequest, user: User, memory_id: str, said: str
) -> HttpResponse:
    """The detail panel after a change, with the row and quotas in step."""
    context = {**_detail(user, memory_id), "oob_row": True, **quota_context(user)}
    return render(request, "web/memory/_detail.html", context, said=said)


@require_POST
@user_view
def memory_edit(request: HttpRequest, user: User, memory_id: str) -> HttpResponse:
    data = parse(MemoryEditForm, request.POST)
    services.memory_update(
        ctx=context_from_request(request),
        user=user,
        memory_id=memory_id,
        content=data["content"],
        tier=data["tier"],
        metadata={"tags": tag_list(data["tags"])},
    )
    return _changed_detail(request, user, memory_id, "Changes saved.")


@require_POST
@user_view
def memory_revert(request: HttpRequest, user: User, memory_id: str) -> HttpResponse:
    version = parse(RevertForm, request.POST)["version"]
    services.memory_revert(
        ctx=context_from_request(request),
        user=user,
        memory_id=memory_id,
        version=version,
    )
    return _changed_detail(request, user, memory_id, f"Reverted to version {version}.")
