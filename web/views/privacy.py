"""Settings, privacy half: export (request, progress, download) and deleting
the account (confirm, then the receipt). The same services as the API's
/v1/user/export and /v1/user/delete."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import logout as session_logout
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from kimberly.api.errors import NotFound
from kimberly.context import context_from_request
from privacy.erasure import selectors as erasure_selectors
from privacy.erasure import services as erasure_services
from privacy.exports import selectors as export_selectors
from privacy.exports import services as export_services
from privacy.exports.models import DataExport
from users.models import User
from web.forms import parse
from web.forms_settings import DeleteAccountForm, ExportForm
from web.views.base import (
    announce,
    client_redirect,
    is_htmx,
    public_view,
    render,
    user_view,
)

EXPORTS_SHOWN = 5
ACTIVE = {DataExport.State.QUEUED, DataExport.State.RUNNING}
# The receipt tokens this browser was given (in its new, signed-out session).
RECEIPTS_KEY = "web.receipts"


def exports_context(user: User) -> dict[str, Any]:
    exports = list(export_selectors.exports_for(user=user)[:EXPORTS_SHOWN])
    return {
        "exports": exports,
        "exports_active": any(e.status in ACTIVE for e in exports),
        "export_formats": DataExport.Format.choices,
    }


@require_POST
@user_view
def export_request(request: HttpRequest, user: User) -> HttpResponse:
    data = parse(ExportForm, request.POST)
    export = export_services.export_request(
        ctx=context_from_request(request), user=user, fmt=data["format"]
    )
    context = {**exports_context(user), "watch": export.public_id}
    said = "Export requested: it is being prepared."
    return render(request, "web/settings/_export_list.html", context, said=said)


@require_GET
@user_view
def export_list(request: HttpRequest, user: User) -> HttpResponse:
    """The exports again (polled while one is being prepared); says so when
    the one being watched is finished."""
    watch = request.GET.get("watch", "")[:64]
    context = {**exports_context(user), "watch": watch}
    response = render(request, "web/settings/_export_list.html", context)
    done = next((e for e in context["exports"] if e.public_id == watch), None)
    if done is not None and done.status == DataExport.State.SUCCEEDED:
        announce(response, "Your export is ready to download.")
    elif done is not None and done.status not in ACTIVE:
        announce(response, f"The export {done.status}.", error=True)
    return response


@require_GET
@user_view
def export_download(request: HttpRequest, user: User, export_id: str) -> HttpResponse:
    """A fresh short-lived signed link to the zip (so a page left open still
    downloads): a redirect to object storage."""
    export = export_selectors.export_get(user=user, export_id=export_id)
    url = export_services.export_download_url(export)
    if url is None:
        raise NotFound(
            f"Export {export.public_id} has no file to download ({export.status}).",
            code="export_not_ready",
        )
    return redirect(url)


@require_POST
@user_view
def account_delete(request: HttpRequest, user: User) -> HttpResponse:
    """Stop the account now and queue its erasure; the browser is signed out
    and shown the receipt page (its token kept in the new session only)."""
    confirm = parse(DeleteAccountForm, request.POST)["confirm"]
    requested = erasure_services.deletion_request(
        ctx=context_from_request(request), user=user, confirm=confirm
    )
    session_logout(request)
    deletion_id = requested.deletion.public_id
    request.session[RECEIPTS_KEY] = {deletion_id: requested.receipt_token}
    # The signed-out session exists only to show the receipt: it ends soon
    # (the page tells the user to keep the receipt's token).
    request.session.set_expiry(settings.WEB_RECEIPT_SESSION_SECONDS)
    url = reverse("web:account-deleted", args=[deletion_id])
    return client_redirect(url) if is_htmx(request) else redirect(url)


@require_GET
@public_view
def account_deleted(request: HttpRequest, deletion_id: str) -> HttpResponse:
    """The deletion and, once the erasure job finished, its receipt; polled
    until then. Only the browser that asked (its session holds the token)."""
    token = request.session.get(RECEIPTS_KEY, {}).get(deletion_id, "")
    deletion = erasure_selectors.deletion_get(
        deletion_id=deletion_id, receipt_token=token
    )
    context = {
        "deletion": deletion,
        "receipt": erasure_selectors.deletion_receipt(deletion),
        "receipt_token": token,
    }
    if is_htmx(request):
        return render(request, "web/settings/_receipt.html", context)
    return render(request, "web/settings/deleted.html", context)
