"""The chat screen in a real headless chromium against a live server: a reply
streamed with its context rail, protecting the memory from the rail (mouse and
keyboard), accepting a proposed memory, and the axe scan of a conversation."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from chat.models import Message
from chat.proposals import proposals_from_reply
from memory import gateway, indexing
from memory.models import MemoryItem, MemoryProposal
from memory.tests.factories import ctx_for, memory_for
from tests.standins.openai_server import Behaviour
from web.tests import test_browser as journeys

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The fixtures of the other browser tests: one chromium per module, a page
# that fails the test on any CSP refusal or script error.
browser = journeys.browser
context = journeys.context
page = journeys.page
_model_loaded = journeys._model_loaded

CLARA = journeys.CLARA
QUESTION = "Where does Clara live now?"


def _live(page: Page):
    return page.locator("#live")


def _send(page: Page, text: str) -> None:
    composer = page.locator("#chat-composer")
    composer.get_by_label("Message").fill(text)
    composer.get_by_role("button", name="Send").click()


def _sign_in_to_chat(page: Page, base: str, email: str) -> None:
    journeys._sign_in(page, base, email)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Chat").click()
    expect(page.get_by_role("heading", name="New conversation")).to_be_visible()


def test_chat_the_rail_shows_the_memory_and_protects_it(live_server, page, alice):
    item = memory_for(alice, CLARA)
    indexing.drain_pending()
    _sign_in_to_chat(page, live_server.url, alice.email)
    expect(page.locator("#runner-state")).to_contain_text(
        "No language model configured."
    )
    _send(page, QUESTION)
    reply = page.locator("#transcript > li.turn-reply").last
    expect(reply).to_contain_text("No language model is configured")
    expect(_live(page)).to_contain_text("Kimberly replied, using")
    # The page is now the conversation's, and the list shows it.
    page.wait_for_url("**/chat/conv_*")
    expect(page.locator("#conversations")).to_contain_text(QUESTION)
    expect(page.locator("#transcript > li.turn-user")).to_contain_text(QUESTION)

    entry = reply.locator(".rail-entry", has_text=CLARA)
    expect(entry).to_contain_text("Why")
    expect(entry).to_contain_text("Score")
    entry.get_by_role("button", name="Protect").click()
    expect(_live(page)).to_have_text("Memory protected.")
    entry = reply.locator(".rail-entry", has_text=CLARA)
    expect(entry.get_by_role("button", name="Unprotect")).to_be_focused()
    expect(entry).to_contain_text("Protected")
    assert MemoryItem.objects.get(pk=item.pk).protected

    # A follow-up goes into the same conversation.
    _send(page, "And Clara again?")
    expect(page.locator("#transcript > li.turn-reply")).to_have_count(2)
    assert (
        Message.objects.filter(user=alice).values("conversation").distinct().count()
        == 1
    )


def test_the_rail_by_keyboard_only(live_server, page, alice):
    item = memory_for(alice, CLARA)
    indexing.drain_pending()
    _sign_in_to_chat(page, live_server.url, alice.email)
    journeys.tab_to(page, "#composer-message")
    page.keyboard.type(QUESTION)
    journeys.tab_to(page, "#chat-composer button[type=submit]")
    page.keyboard.press("Enter")
    expect(_live(page)).to_contain_text("Kimberly replied, using")
    journeys.tab_to(page, ".rail-entry [hx-post$='/protect']", back=True)
    assert journeys.focus_is_visible(page)
    page.keyboard.press("Enter")
    expect(_live(page)).to_have_text("Memory protected.")
    expect(page.locator(".rail-entry [hx-post$='/unprotect']")).to_be_focused()
    assert MemoryItem.objects.get(pk=item.pk).protected


def test_accept_a_proposed_memory(live_server, page, alice, with_llm):
    with_llm.script(
        Behaviour(reply="Hiking in the Alps sounds wonderful."),
        Behaviour(reply='{"facts": ["Alice loves hiking in the Alps"]}'),
    )
    _sign_in_to_chat(page, live_server.url, alice.email)
    expect(page.locator("#runner-state")).to_have_count(0)
    _send(page, "I love hiking in the Alps")
    expect(page.locator("#transcript > li.turn-reply")).to_contain_text(
        "sounds wonderful"
    )
    expect(page.locator("#proposals")).to_contain_text("Nothing proposed right now.")
    # What the Celery worker does after the reply; the page polls for it.
    proposals_from_reply(reply_id=Message.objects.get(role="assistant").pk)
    proposal = page.locator(".proposal", has_text="Alice loves hiking in the Alps")
    proposal.get_by_role("button", name="Accept").click()
    expect(_live(page)).to_have_text("Saved to memory.")
    expect(proposal.locator(".decided")).to_be_focused()
    assert MemoryProposal.objects.get(user=alice).status == "accepted"
    assert (
        MemoryItem.objects.get(user=alice).content == "Alice loves hiking in the Alps"
    )


def test_a_conversation_passes_axe_at_desktop_and_phone_width(live_server, page, alice):
    memory_for(alice, CLARA)
    memory_for(alice, "Clara has a flat with a blue door")
    _sign_in_to_chat(page, live_server.url, alice.email)
    _send(page, QUESTION)
    expect(_live(page)).to_contain_text("Kimberly replied, using")
    page.wait_for_url("**/chat/conv_*")
    gateway.propose(
        ctx=ctx_for(alice), user=alice, facts=["Alice visits Clara in May"], origin=""
    )
    found = journeys._scan(page, "chat-conversation", page.url)
    assert found == []


def test_with_streaming_off_the_reply_is_polled_for_by_htmx(
    live_server, page, alice, settings
):
    settings.WEB_CHAT_STREAM = False
    memory_for(alice, CLARA)
    _sign_in_to_chat(page, live_server.url, alice.email)
    expect(page.locator("#chat-composer[data-stream]")).to_have_count(0)
    _send(page, QUESTION)
    reply = page.locator("#transcript > li.turn-reply")
    expect(reply.locator(".rail-entry", has_text=CLARA)).to_be_visible()
    expect(_live(page)).to_contain_text("Kimberly replied, using")
    expect(page.locator("#composer-message")).to_have_value("")
    page.wait_for_url("**/chat/conv_*")
