"""The UI in a real headless chromium against a live server on the real
databases: the first journey with a mouse and with the keyboard only, an axe
scan and screenshots of every built screen, and bob seeing none of alice's."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from memory import embeddings, indexing, selectors
from memory.models import MemoryItem
from memory.tests.factories import memory_for
from users.tests.factories import DEFAULT_PASSWORD
from web.tests.browser import (
    WIDTHS,
    PageProblems,
    blocking_violations,
    focus_is_visible,
    headless_chromium,
    overflows_horizontally,
    screenshot,
    tab_to,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CLARA = "My sister Clara moved to Lisbon last spring"
OTHERS = ["The car needs new winter tyres", "Dentist appointment on Friday at ten"]
# No word in common with CLARA: only its meaning can find it.
QUESTION = "which city does my sibling live in"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with headless_chromium() as browser:
        yield browser


@pytest.fixture(scope="module", autouse=True)
def _model_loaded() -> None:
    embeddings.embed_texts(["warm up"])  # loaded once, not inside a journey


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    page = context.new_page()
    problems = PageProblems(page)
    yield page
    assert problems.messages == [], problems.messages  # no CSP refusal or script error


def _live(page: Page):
    return page.locator("#live")


def _rows(page: Page):
    return page.locator("#memory-rows > li")


def _index_new_memories() -> None:
    """What the Celery worker does after each write: embed the queued memories."""
    indexing.drain_pending()


def test_sign_up_add_find_by_meaning_archive_restore(live_server, page):
    page.goto(f"{live_server.url}/")
    page.locator("main").get_by_role("link", name="Create an account").click()
    page.get_by_label("Email").fill("carol@example.com")
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("heading", name="Welcome back")).to_be_visible()

    page.get_by_role("navigation", name="Main").get_by_role(
        "link", name="Memory"
    ).click()
    add = page.locator("#memory-add")
    for n, text in enumerate([CLARA, *OTHERS], start=1):
        add.get_by_label("Content").fill(text)
        add.get_by_role("button", name="Add memory").click()
        expect(_rows(page)).to_have_count(n)
    expect(_live(page)).to_have_text("Memory saved.")
    expect(add.get_by_label("Content")).to_have_value("")  # ready for the next

    # A refusal appears beside the control that caused it, in words and code.
    add.get_by_label("Content").fill("my diagnosis")
    add.get_by_label("Sensitive").check()
    add.get_by_role("button", name="Add memory").click()
    expect(add.locator(".error-slot")).to_contain_text("consent_required")
    expect(_live(page)).to_contain_text("Error:")
    add.get_by_label("Sensitive").uncheck()

    _index_new_memories()
    page.get_by_label("Find by meaning").fill(QUESTION)
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator("#memory-list")).to_contain_text("best match first")
    first = _rows(page).first
    expect(first).to_contain_text(CLARA)

    first.get_by_role("button", name="Archive").click()
    expect(_live(page)).to_have_text("Memory archived.")
    restore = _rows(page).first.get_by_role("button", name="Restore")
    expect(restore).to_be_focused()
    assert MemoryItem.objects.get(content=CLARA).status == "archived"
    restore.click()
    expect(_live(page)).to_have_text("Memory restored.")
    expect(_rows(page).first.get_by_role("button", name="Archive")).to_be_focused()
    assert MemoryItem.objects.get(content=CLARA).status == "active"


def test_the_same_journey_with_the_keyboard_only(live_server, page):
    page.goto(f"{live_server.url}/")
    tab_to(page, "main a[href='/signup']")
    assert focus_is_visible(page)
    page.keyboard.press("Enter")
    page.wait_for_url("**/signup")
    tab_to(page, "#signup-email")
    page.keyboard.type("dave@example.com")
    page.keyboard.press("Tab")
    page.keyboard.type(DEFAULT_PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Welcome back")).to_be_visible()

    tab_to(page, "nav a[href='/memory']")
    page.keyboard.press("Enter")
    page.wait_for_url("**/memory")
    expect(page.get_by_role("heading", name="Memory", exact=True)).to_be_visible()
    for n, text in enumerate([CLARA, *OTHERS], start=1):
        tab_to(page, "#add-content", back=n > 1)
        page.keyboard.type(text)
        tab_to(page, "#memory-add button[type=submit]")
        page.keyboard.press("Enter")
        expect(_rows(page)).to_have_count(n)
        # The keyboard lands on the new memory, not at the top of the page.
        expect(_rows(page).first.get_by_role("button", name="Open")).to_be_focused()

    _index_new_memories()
    tab_to(page, "#filter-q", back=True)
    page.keyboard.type(QUESTION)
    page.keyboard.press("Enter")
    expect(page.locator("#memory-list")).to_contain_text("best match first")
    expect(_rows(page).first).to_contain_text(CLARA)

    tab_to(page, "#memory-rows > li:first-child [hx-post$='/archive']")
    assert focus_is_visible(page)
    page.keyboard.press("Enter")
    expect(_live(page)).to_have_text("Memory archived.")
    expect(_rows(page).first.get_by_role("button", name="Restore")).to_be_focused()
    page.keyboard.press("Enter")
    expect(_live(page)).to_have_text("Memory restored.")
    expect(_rows(page).first.get_by_role("button", name="Archive")).to_be_focused()
    assert MemoryItem.objects.get(content=CLARA).status == "active"


def _sign_in(page: Page, base: str, email: str) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Welcome back")).to_be_visible()


def _open_first_memory_and_fail_once(page: Page) -> None:
    """The detail panel open, and an error shown beside the add form."""
    _rows(page).first.get_by_role("button", name="Open").click()
    expect(page.locator("#detail-title")).to_be_focused()
    add = page.locator("#memory-add")
    add.get_by_label("Content").fill("my diagnosis")
    add.get_by_label("Tier").select_option("short-term")
    add.get_by_label("Sensitive").check()
    add.get_by_role("button", name="Add memory").click()
    expect(add.locator(".error")).to_contain_text("consent_required")


SIGNED_OUT = {"login": "/", "signup": "/signup", "password-reset": "/password/reset"}
SIGNED_IN = {
    "dashboard": "/",
    "memory": "/memory",
    "chat": "/chat",
    "agents": "/agents",
    "metrics": "/insights",
    "settings": "/settings",
    "password-change": "/password/change",
}


def _scan(page: Page, name: str, url: str, prepare=None) -> list[str]:
    """axe at both widths, a screenshot of each, and no sideways scrolling."""
    found = []
    for width_name, (width, height) in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        page.goto(url)
        if prepare:
            prepare(page)
        found += [f"{name}@{width}: {v}" for v in blocking_violations(page)]
        if overflows_horizontally(page):
            found.append(f"{name}@{width}: scrolls sideways")
        screenshot(page, name, width_name)
    return found


def test_every_screen_passes_axe_at_desktop_and_phone_width(
    live_server, page, alice, settings
):
    memory_for(alice, CLARA, metadata={"tags": ["family"]}, protected=True)
    memory_for(alice, OTHERS[0], tier="short-term", archived=True)
    # One bar of each colour: long-term amber (80%+), permanent red (90%+).
    memory_for(alice, OTHERS[1], tier="permanent")
    used = {t.tier: t.used_bytes for t in selectors.memory_metrics(user=alice).tiers}
    settings.MEMORY_QUOTA_DEFAULTS = {
        **settings.MEMORY_QUOTA_DEFAULTS,
        "long-term": int(used["long-term"] / 0.85),
        "permanent": int(used["permanent"] / 0.95),
    }
    found = []
    for name, path in SIGNED_OUT.items():
        found += _scan(page, name, f"{live_server.url}{path}")
    _sign_in(page, live_server.url, alice.email)
    for name, path in SIGNED_IN.items():
        found += _scan(page, name, f"{live_server.url}{path}")
    found += _scan(
        page,
        "memory-detail",
        f"{live_server.url}/memory?status=all",
        prepare=_open_first_memory_and_fail_once,
    )
    assert found == []
    page.goto(f"{live_server.url}/memory")
    for level in ("ok", "warn", "danger"):
        expect(page.locator(f"#quotas .quota-{level}")).to_have_count(1)


def test_bobs_browser_gets_404_on_alices_fragments_and_never_sees_her_data(
    live_server, page, alice, bob
):
    item = memory_for(alice, "Alice's secret recipe")
    _sign_in(page, live_server.url, bob.email)
    for path in ("", "/edit", "/archive", "/protect", "/delete"):
        url = f"{live_server.url}/memory/{item.public_id}{path}"
        headers = {"HX-Request": "true", "X-CSRFToken": _csrf(page)}
        form = {"tier": "long-term", "content": "mine"} if path == "/edit" else None
        if path:
            response = page.request.post(url, headers=headers, form=form)
        else:
            response = page.request.get(url, headers=headers)
        assert response.status == 404, path
        assert "secret recipe" not in response.text()
    page.goto(f"{live_server.url}/memory?status=all")
    expect(page.locator("main")).not_to_contain_text("secret recipe")
    assert MemoryItem.objects.get(pk=item.pk).status == "active"


def _csrf(page: Page) -> str:
    """The token the page hands htmx (body hx-headers)."""
    import json

    return json.loads(page.locator("body").get_attribute("hx-headers") or "{}")[
        "X-CSRFToken"
    ]


def test_the_axe_scan_finds_a_missing_label(page):
    """The scan above can fail: an unlabelled field is a critical violation."""
    page.set_content("<!doctype html><html lang=en><title>t</title><input>")
    assert any(v.startswith("label ") for v in blocking_violations(page))


def test_the_api_docs_and_the_admin_run_under_the_strict_csp(live_server, page):
    """The CSP covers every page: Swagger UI (split view: its script is a file)
    and the admin must still render, with no refusal in the console."""
    page.goto(f"{live_server.url}/admin/login/")
    expect(page.get_by_label("Email")).to_be_visible()
    page.goto(f"{live_server.url}/v1/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Kimberly API")
