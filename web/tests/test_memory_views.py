"""The memory manager through Django's test client: filters, quotas, in-place
actions, the detail panel, errors beside their control, and bob seeing nothing
of alice's."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from memory import selectors
from memory.models import MemoryItem
from memory.tests.factories import grant, memory_for
from users import consents
from web.presenters import QuotaBar
from web.tests.conftest import HX, said, text_of

pytestmark = pytest.mark.django_db


def _item(item: MemoryItem) -> MemoryItem:
    return MemoryItem.objects.get(pk=item.pk)


def test_the_list_shows_preview_tier_score_tags_and_markers(alice, alice_web):
    memory_for(
        alice,
        "Alice keeps her passport in the blue drawer",
        metadata={"tags": ["travel"], "sensitive": True},
        protected=True,
    )
    page = text_of(alice_web.get("/memory"))
    assert "Alice keeps her passport in the blue drawer" in page
    assert 'class="badge badge-tier">long-term<' in page
    assert '<span class="tag">travel</span>' in page
    assert ">Protected<" in page and ">Sensitive<" in page
    assert "<dt>Score</dt>" in page and "<dt>Last seen</dt>" in page


def test_filters_by_tier_tags_status_and_dates(alice, alice_web):
    memory_for(alice, "tea with lemon", metadata={"tags": ["food"]})
    memory_for(alice, "meeting on monday", tier="short-term")
    memory_for(alice, "the old flat", archived=True)
    old = memory_for(alice, "school in 1999")
    MemoryItem.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(days=400)
    )

    def listed(query: str) -> str:
        return text_of(alice_web.get(f"/memory/list?{query}", **HX))

    assert "meeting on monday" in listed("tier=short-term")
    assert "tea with lemon" not in listed("tier=short-term")
    assert "tea with lemon" in listed("tags=food, other")
    assert "meeting" not in listed("tags=food")
    assert "the old flat" in listed("status=archived")
    assert "the old flat" not in listed("")
    since = (timezone.now() - timedelta(days=30)).date().isoformat()
    assert "school in 1999" not in listed(f"since={since}")
    assert "school in 1999" in listed(f"until={since}")


def test_text_is_the_hybrid_query_ranked_with_why(alice, alice_web):
    memory_for(alice, "Alice's sister Clara lives in Lisbon")
    memory_for(alice, "The car needs new tyres")
    body = text_of(alice_web.get("/memory/list?q=Lisbon", **HX))
    assert "Clara lives in Lisbon" in body and "tyres" not in body
    assert "1 result for" in body and "<dt>Match</dt>" in body
    assert 'class="why"' in body
    listed = alice_web.get("/memory/list?q=Lisbon&tier=&page=2", **HX)
    assert listed["HX-Push-Url"] == "/memory?q=Lisbon"


def test_a_bad_filter_is_400_beside_the_filter_form(alice_web):
    response = alice_web.get("/memory/list?since=yesterday", **HX)
    assert response.status_code == 400
    assert "validation_error" in text_of(response) and "From:" in text_of(response)


def test_adding_a_memory_returns_its_row_and_fresh_quota_bars(alice, alice_web):
    response = alice_web.post(
        "/memory/add",
        {"tier": "long-term", "content": "Bob likes jazz", "tags": "music, bob"},
        **HX,
    )
    assert response.status_code == 200
    assert said(response)["message"] == "Memory saved."
    (item,) = selectors.memory_list(user=alice, filters=selectors.MemoryFilters())
    assert item.content == "Bob likes jazz" and item.tags == ["music", "bob"]
    body = text_of(response)
    assert f'id="row-{item.public_id}"' in body
    assert 'id="quotas" class="quotas" aria-labelledby="quotas-title" hx-swap-oob' in (
        body
    )


def test_a_sensitive_memory_without_consent_is_refused_with_its_code(alice, alice_web):
    response = alice_web.post(
        "/memory/add",
        {"tier": "long-term", "content": "my diagnosis", "sensitive": "on"},
        **HX,
    )
    assert response.status_code == 400
    assert 'data-error-code="consent_required"' in text_of(response)
    assert not MemoryItem.objects.filter(user=alice).exists()
    grant(alice, consents.Purpose.SENSITIVE_MEMORY)
    again = alice_web.post(
        "/memory/add",
        {"tier": "long-term", "content": "my diagnosis", "sensitive": "on"},
        **HX,
    )
    assert again.status_code == 200


def test_over_the_hard_limit_the_error_says_quota_exceeded(alice, alice_web, settings):
    settings.MEMORY_QUOTA_DEFAULTS = {**settings.MEMORY_QUOTA_DEFAULTS, "permanent": 8}
    response = alice_web.post(
        "/memory/add", {"tier": "permanent", "content": "x" * 100}, **HX
    )
    assert response.status_code == 429
    assert 'data-error-code="quota_exceeded"' in text_of(response)
    assert said(response)["level"] == "error"


def test_archive_and_restore_in_place_focus_the_undo_button(alice, alice_web):
    item = memory_for(alice)
    archived = alice_web.post(f"/memory/{item.public_id}/archive", **HX)
    assert said(archived)["message"] == "Memory archived."
    assert _item(item).status == "archived"
    assert "data-autofocus>Restore</button>" in text_of(archived)
    restored = alice_web.post(f"/memory/{item.public_id}/restore", **HX)
    assert _item(item).status == "active"
    assert "data-autofocus>Archive</button>" in text_of(restored)


def test_protect_unprotect_and_delete(alice, alice_web):
    item = memory_for(alice)
    alice_web.post(f"/memory/{item.public_id}/protect", **HX)
    assert _item(item).protected
    alice_web.post(f"/memory/{item.public_id}/unprotect", **HX)
    assert not _item(item).protected
    deleted = alice_web.post(f"/memory/{item.public_id}/delete", **HX)
    assert said(deleted)["message"] == "Memory deleted."
    assert not MemoryItem.objects.filter(pk=item.pk).exists()


def test_an_unknown_action_is_404(alice, alice_web):
    item = memory_for(alice)
    assert alice_web.post(f"/memory/{item.public_id}/explode", **HX).status_code == 404


def test_edit_then_revert_through_the_detail_panel(alice, alice_web):
    item = memory_for(alice, "first words")
    detail = text_of(alice_web.get(f"/memory/{item.public_id}", **HX))
    assert ">first words</textarea>" in detail and "No earlier versions" in detail
    edited = alice_web.post(
        f"/memory/{item.public_id}/edit",
        {"tier": "long-term", "content": "second words", "tags": "x"},
        **HX,
    )
    assert said(edited)["message"] == "Changes saved."
    assert _item(item).content == "second words"
    body = text_of(edited)
    assert "Revert to version 1" in body
    assert f'id="row-{item.public_id}" class="memory" data-error-scope hx-swap-oob' in (
        body
    )
    reverted = alice_web.post(
        f"/memory/{item.public_id}/revert", {"version": "1"}, **HX
    )
    assert said(reverted)["message"] == "Reverted to version 1."
    assert _item(item).content == "first words"


def test_an_empty_edit_is_refused_beside_the_form(alice, alice_web):
    item = memory_for(alice, "keep me")
    response = alice_web.post(
        f"/memory/{item.public_id}/edit", {"tier": "long-term", "content": ""}, **HX
    )
    assert response.status_code == 400
    assert "Content:" in text_of(response)
    assert _item(item).content == "keep me"


def test_bob_gets_404_on_every_fragment_of_alices_memory(alice, bob_web):
    item = memory_for(alice, "Alice's secret recipe")
    pid = item.public_id
    requests = [
        ("get", f"/memory/{pid}", {}),
        ("post", f"/memory/{pid}/edit", {"tier": "long-term", "content": "mine"}),
        ("post", f"/memory/{pid}/revert", {"version": "1"}),
        ("post", f"/memory/{pid}/archive", {}),
        ("post", f"/memory/{pid}/restore", {}),
        ("post", f"/memory/{pid}/protect", {}),
        ("post", f"/memory/{pid}/unprotect", {}),
        ("post", f"/memory/{pid}/delete", {}),
    ]
    for method, path, data in requests:
        response = getattr(bob_web, method)(path, data, **HX)
        assert response.status_code == 404, path
        assert "secret recipe" not in text_of(response)
    for path in ("/", "/memory", "/memory/list?status=all", "/memory/list?q=recipe"):
        assert "secret recipe" not in text_of(bob_web.get(path))
    assert _item(item).content == "Alice's secret recipe"
    assert _item(item).status == "active" and not _item(item).protected


@pytest.mark.parametrize(
    ("used", "level"), [(79, "ok"), (80, "warn"), (89, "warn"), (90, "danger")]
)
def test_quota_bars_turn_amber_at_80_and_red_at_90_percent(used, level):
    bar = QuotaBar(
        tier="long-term",
        used=used,
        soft=100,
        hard=125,
        active_items=1,
        archived_items=0,
    )
    assert bar.level == level


def test_the_quota_bar_shows_used_soft_and_hard_limits(alice, alice_web, settings):
    memory_for(alice, "x" * 85, tier="short-term")
    used = selectors.memory_metrics(user=alice).tiers[0].used_bytes
    soft = int(used / 0.85)
    settings.MEMORY_QUOTA_DEFAULTS = {
        **settings.MEMORY_QUOTA_DEFAULTS,
        "short-term": soft,
    }
    settings.QUOTA_HARD_LIMIT_RATIO = 1.25
    page = text_of(alice_web.get("/memory"))
    assert 'class="quota quota-warn"' in page
    assert f'max="{int(soft * 1.25)}" value="{used}"' in page
    assert "(85%) · filling up" in page
