"""The Settings screen through Django's test client: profile, weights, goals,
embeddings, consents with history, API tokens, export with its download, and
deleting the account with its receipt; errors beside their control; bob gets
404 on alice's fragments."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client
from knox.models import AuthToken

from memory.models import Goal
from memory.tests.factories import ctx_for
from privacy.erasure.models import Deletion
from privacy.erasure.services import deletion_run
from privacy.exports import services as export_services
from privacy.exports.models import DataExport
from users import consents, services
from users.models import Consent, User
from web.tests.conftest import HX, said, text_of

pytestmark = pytest.mark.django_db


def _fresh(user: User) -> User:
    return User.objects.get(pk=user.pk)


def test_the_page_has_every_section_and_keeps_the_password_link(alice_web):
    page = text_of(alice_web.get("/settings"))
    for title in (
        "Profile",
        "Memory",
        "Meditation weights",
        "Goals",
        "Consents",
        "API tokens",
        "Export your data",
        "Delete your account",
    ):
        assert f">{title}</h2>" in page, title
    assert 'href="/password/change"' in page
    assert "<option selected>UTC</option>" in page
    assert 'value="0.40"' in page  # the default relevance weight


def test_the_time_zone_is_saved_and_a_bad_one_refused_beside_it(alice, alice_web):
    r = alice_web.post("/settings/profile", {"time_zone": "Europe/Lisbon"}, **HX)
    assert r.status_code == 200
    assert "<option selected>Europe/Lisbon</option>" in text_of(r)
    assert said(r)["message"] == "Profile saved."
    assert _fresh(alice).time_zone == "Europe/Lisbon"

    r = alice_web.post("/settings/profile", {"time_zone": "Mars/Olympus"}, **HX)
    assert r.status_code == 400
    assert 'data-error-code="invalid_time_zone"' in text_of(r)
    assert _fresh(alice).time_zone == "Europe/Lisbon"


def test_weights_are_scaled_to_one_and_all_zero_is_refused(alice, alice_web):
    weights = {
        "relevance_to_goals": "1",
        "emotional_weight": "1",
        "predictive_value": "1",
        "recency_freq": "1",
    }
    r = alice_web.post("/settings/weights", weights, **HX)
    assert r.status_code == 200
    assert text_of(r).count('value="0.25"') == 4
    assert (_fresh(alice).meditation_weights or {})["recency_freq"] == 0.25

    zero = dict.fromkeys(weights, "0")
    r = alice_web.post("/settings/weights", zero, **HX)
    assert r.status_code == 400
    assert 'data-error-code="validation_error"' in text_of(r)
    assert "must not all be zero" in text_of(r)
    assert (_fresh(alice).meditation_weights or {})["recency_freq"] == 0.25


def test_embeddings_and_auto_accept_are_switched(alice, alice_web):
    r = alice_web.post("/settings/memory", {"memory_auto_accept": "on"}, **HX)
    assert r.status_code == 200
    user = _fresh(alice)
    assert (user.embedding_enabled, user.memory_auto_accept) == (False, True)
    assert 'id="memory-embedding" name="embedding_enabled" type="checkbox" ' in text_of(
        r
    )
    alice_web.post("/settings/memory", {"embedding_enabled": "on"}, **HX)
    assert _fresh(alice).embedding_enabled


def test_goals_are_added_and_removed_and_bob_cannot_remove_alices(
    alice, alice_web, bob_web
):
    r = alice_web.post(
        "/settings/goals", {"text": "Learn Portuguese", "tags": "lang, travel"}, **HX
    )
    assert r.status_code == 200
    assert "Learn Portuguese" in text_of(
        r
    ) and '<span class="tag">travel</span>' in text_of(r)
    goal = Goal.objects.get(user=alice)
    assert goal.tags == ["lang", "travel"]

    r = bob_web.post(f"/settings/goals/{goal.pk}/delete", **HX)
    assert r.status_code == 404
    assert Goal.objects.filter(pk=goal.pk).exists()
    assert "Learn Portuguese" not in text_of(bob_web.get("/settings"))

    r = alice_web.post(f"/settings/goals/{goal.pk}/delete", **HX)
    assert r.status_code == 200 and said(r)["message"] == "Goal removed."
    assert not Goal.objects.filter(pk=goal.pk).exists()

    r = alice_web.post("/settings/goals", {"text": "   "}, **HX)
    assert r.status_code == 400


def test_a_consent_is_granted_and_withdrawn_with_its_history(alice, alice_web):
    r = alice_web.post("/settings/consents/sensitive_memory/grant", **HX)
    assert r.status_code == 200
    assert ">Granted</span>" in text_of(r) and ">Withdraw</button>" in text_of(r)
    assert consents.has_consent(alice, "sensitive_memory")

    r = alice_web.post("/settings/consents/sensitive_memory/withdraw", **HX)
    assert ">Not granted</span>" in text_of(r) and "History (1)" in text_of(r)
    assert "withdrawn" in text_of(r) and "(web)" in text_of(r)
    assert said(r)["message"] == "Sensitive memories: consent withdrawn."
    row = Consent.objects.get(user=alice)
    assert (row.source, row.withdrawn_source) == ("web", "web")

    r = alice_web.post("/settings/consents/sensitive_memory/grant", **HX)
    assert "History (2)" in text_of(r)
    r = alice_web.post("/settings/consents/nonsense/grant", **HX)
    assert r.status_code == 404 and 'data-error-code="unknown_purpose"' in text_of(r)
    r = alice_web.post("/settings/consents/telemetry/maybe", **HX)
    assert r.status_code == 404


def test_a_token_is_shown_once_works_and_is_revoked(alice, alice_web, bob_web):
    r = alice_web.post("/settings/tokens", **HX)
    assert r.status_code == 200
    token = text_of(r).split('id="token-new" class="token" value="')[1].split('"')[0]
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api.get("/v1/user").status_code == 200
    assert token not in text_of(alice_web.get("/settings"))  # never again
    key = AuthToken.objects.get(user=alice).token_key
    assert f"<code>{key[:8]}…</code>" in text_of(alice_web.get("/settings"))

    r = bob_web.post(f"/settings/tokens/{key}/revoke", **HX)
    assert r.status_code == 404 and 'data-error-code="token_not_found"' in text_of(r)
    assert api.get("/v1/user").status_code == 200

    r = alice_web.post(f"/settings/tokens/{key}/revoke", **HX)
    assert r.status_code == 200 and said(r)["message"] == "Token revoked."
    assert api.get("/v1/user").status_code == 401


def test_an_export_shows_its_progress_then_downloads(alice, alice_web, bob_web):
    r = alice_web.post("/settings/export", {"format": "json"}, **HX)
    assert r.status_code == 200
    export = DataExport.objects.get(user=alice)
    assert "Progress: 0 of" in text_of(r)
    assert f'hx-get="/settings/exports?watch={export.public_id}"' in text_of(r)

    again = alice_web.post("/settings/export", {"format": "csv"}, **HX)
    assert again.status_code == 429
    assert 'data-error-code="export_cooldown"' in text_of(again)

    export_services.export_run(export_id=str(export.pk))
    r = alice_web.get(f"/settings/exports?watch={export.public_id}", **HX)
    assert "Download the export" in text_of(r) and "hx-trigger" not in text_of(r)
    assert said(r)["message"] == "Your export is ready to download."

    url = f"/settings/exports/{export.public_id}/download"
    assert bob_web.get(url).status_code == 404
    r = alice_web.get(url)
    assert r.status_code == 302
    assert f"kimberly-{export.public_id}.zip" in r["Location"]


def test_an_unfinished_export_has_no_download(alice, alice_web):
    export = export_services.export_request(ctx=ctx_for(alice), user=alice, fmt="csv")
    r = alice_web.get(f"/settings/exports/{export.public_id}/download", **HX)
    assert r.status_code == 404
    assert 'data-error-code="export_not_ready"' in text_of(r)


def test_deleting_needs_the_confirmation_then_signs_out_and_shows_the_receipt(
    alice, alice_web
):
    r = alice_web.post("/settings/delete", {}, **HX)
    assert r.status_code == 400
    assert 'data-error-code="confirmation_required"' in text_of(r)
    assert _fresh(alice).is_active

    AuthToken.objects.create(user=alice)
    r = alice_web.post("/settings/delete", {"confirm": "on"}, **HX)
    assert r.status_code == 204
    deletion = Deletion.objects.get(user_id=alice.pk)
    assert r["HX-Redirect"] == f"/account/deleted/{deletion.public_id}"
    assert not _fresh(alice).is_active
    assert not AuthToken.objects.filter(user=alice).exists()
    assert alice_web.get("/settings").status_code == 302  # signed out

    # The signed-out session holds the receipt's token for a day, not for weeks.
    assert alice_web.session.get_expiry_age() == settings.WEB_RECEIPT_SESSION_SECONDS
    page = text_of(alice_web.get(r["HX-Redirect"]))
    assert "Receipt token" in page and "Queued" in page
    assert 'hx-trigger="every 2s"' in page

    deletion_run(deletion_id=deletion.pk)
    fragment = text_of(alice_web.get(r["HX-Redirect"], **HX))
    assert "Verified:" in fragment and "hx-trigger" not in fragment
    assert "<td>postgresql</td>" in fragment
    assert not User.objects.filter(pk=alice.pk).exists()

    # Whoever signs in next in this browser gets a fresh, ordinary session.
    bob = User.objects.create_user(email="bob-next@example.com", password="pw-9f2kq!x")
    signed = alice_web.post("/login", {"email": bob.email, "password": "pw-9f2kq!x"})
    assert signed.status_code == 302
    assert alice_web.session.get_expiry_age() == settings.SESSION_COOKIE_AGE
    assert "web.receipts" not in alice_web.session

    # Another browser has no receipt token for it: the same 404 as no deletion.
    assert Client().get(r["HX-Redirect"]).status_code == 404
    assert Client().get("/account/deleted/del_nothing").status_code == 404


def test_bobs_session_gets_404_on_alices_fragments(alice, bob_web):
    goal = Goal.objects.create(user=alice, text="alice's goal")
    services.api_token_create(ctx=ctx_for(alice), user=alice)
    key = AuthToken.objects.get(user=alice).token_key
    export = export_services.export_request(ctx=ctx_for(alice), user=alice, fmt="json")
    for method, url in (
        ("post", f"/settings/goals/{goal.pk}/delete"),
        ("post", f"/settings/tokens/{key}/revoke"),
        ("get", f"/settings/exports/{export.public_id}/download"),
    ):
        r = getattr(bob_web, method)(url, **HX)
        assert r.status_code == 404, url
    page = text_of(bob_web.get("/settings"))
    assert "alice's goal" not in page and key[:8] not in page
    assert export.public_id not in text_of(bob_web.get("/settings/exports", **HX))
