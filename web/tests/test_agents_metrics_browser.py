"""The Agents and Metrics screens in a real headless chromium against a live
server, with a real agents worker (agents/tests/conftest.py) running the
tasks: the reminder agent previewed and committed, and axe scans of both
screens with their panels and charts filled, at desktop and phone width."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from agents.models import AgentTask, Event, Reminder
from agents.tests import conftest as agent_fixtures
from memory import meditation
from memory.tests.factories import ctx_for, memory_for
from web.tests import test_browser as ui

# The fixtures this module borrows: the agents' real worker, the UI's browser.
_worker_process = agent_fixtures._worker_process
agents_worker = agent_fixtures.agents_worker
browser, context, page = ui.browser, ui.context, ui.page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TASK = "remind me to water the plants tomorrow at 18:00"


def _panel(page: Page):
    return page.locator("#task-panel")


def test_run_the_reminder_agent_with_a_preview_and_commit(
    live_server, page, alice, agents_worker
):
    ui._sign_in(page, live_server.url, alice.email)
    page.get_by_role("navigation", name="Main").get_by_role(
        "link", name="Agents"
    ).click()
    expect(page.get_by_role("heading", name="Agents", exact=True)).to_be_visible()
    expect(page.get_by_role("switch", name="Reminder agent On for you")).to_be_visible()

    form = page.locator("#agent-run")
    form.get_by_label("Task").fill(TASK)
    form.get_by_label("Agent").select_option("reminder")
    expect(form.get_by_label("Preview first")).to_be_checked()
    form.get_by_role("button", name="Run").click()

    # The worker previews it; the panel, polling, shows the plan.
    commit = _panel(page).get_by_role("button", name="Commit")
    expect(commit).to_be_focused(timeout=30_000)
    expect(page.locator("#live")).to_have_text(
        "Preview ready: 1 planned write. Commit to apply."
    )
    expect(_panel(page)).to_contain_text("Remind you to water the plants")
    expect(_panel(page)).to_contain_text("None: this task reads no memories.")
    assert not Reminder.objects.exists()

    commit.click()
    expect(page.locator("#live")).to_have_text("Task succeeded.", timeout=30_000)
    expect(_panel(page).locator("#task-status")).to_have_text("succeeded")
    (rem,) = Reminder.objects.filter(user=alice)
    assert rem.what == "water the plants"
    expect(page.locator("#reminders")).to_contain_text("water the plants")
    expect(page.locator("#task-history")).to_contain_text(TASK)
    _panel(page).get_by_text("Trace (4 steps)").click()  # parse, plan, commit, apply
    expect(_panel(page).locator(".trace")).to_contain_text("reminder.create (applied)")


def test_the_agents_screen_with_its_panels_passes_axe(
    live_server, page, alice, agents_worker
):
    Event.objects.create(
        user=alice,
        uid="dentist@test",
        title="Dentist",
        starts_at=timezone.now() + timedelta(days=3),
        source=Event.Source.TEXT,
    )
    ui._sign_in(page, live_server.url, alice.email)
    page.goto(f"{live_server.url}/agents")
    page.locator("#agent-run").get_by_label("Task").fill(TASK)
    page.locator("#agent-run").get_by_role("button", name="Run").click()
    expect(_panel(page).get_by_role("button", name="Commit")).to_be_visible(
        timeout=30_000
    )
    agent_fixtures.wait_status(AgentTask.objects.get().public_id, "previewed")
    page.get_by_role("switch", name="Coder agent On for you").click()
    expect(page.get_by_role("switch", name="Coder agent Off for you")).to_be_focused()

    def prepare(page: Page) -> None:
        page.locator("#task-history").get_by_role("button", name="Show").click()
        expect(_panel(page).get_by_role("button", name="Commit")).to_be_visible()
        form = page.locator("#agent-run")
        form.get_by_label("Task").fill("xyzzy plugh")
        form.get_by_role("button", name="Run").click()
        expect(form.locator(".error")).to_contain_text("no_agent_fits")

    assert ui._scan(page, "agents-task", f"{live_server.url}/agents", prepare) == []


def test_the_metrics_screen_with_its_charts_passes_axe(live_server, page, alice):
    memory_for(alice, "Alice's garden has three apple trees")
    memory_for(alice, "call the bank", tier="short-term")
    for _ in range(3):
        meditation.meditation_run(ctx=ctx_for(alice), user=alice)
    ui._sign_in(page, live_server.url, alice.email)

    def prepare(page: Page) -> None:
        expect(page.locator("svg.chart-svg")).to_have_count(2)
        page.get_by_text("Show the figures as a table").first.click()

    assert (
        ui._scan(page, "metrics-charts", f"{live_server.url}/insights", prepare) == []
    )
