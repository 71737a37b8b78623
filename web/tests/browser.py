"""Helpers of the browser tests: a headless chromium page that records CSP and
script errors, keyboard navigation, the axe-core scan and screenshots."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
# Git-ignored (.gitignore); each run overwrites the previous run's files.
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}
BLOCKING_IMPACTS = {"serious", "critical"}


def chromium_path() -> str:
    """Debian's chromium (make browser installs it); Playwright's own browser
    download is never used."""
    path = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if not path:
        raise RuntimeError("no chromium: run `make browser` (apt-get install chromium)")
    return path


@contextmanager
def headless_chromium() -> Iterator[Browser]:
    # The sync API runs an event loop in this thread; Django's ORM refuses to
    # run next to one unless told it is safe (the test's own ORM calls are
    # synchronous and never overlap the browser's).
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as pw:
            args = ["--no-sandbox"] if os.geteuid() == 0 else []
            browser = pw.chromium.launch(
                executable_path=chromium_path(), headless=True, args=args
            )
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class PageProblems:
    """Console errors (CSP refusals among them) and uncaught script errors."""

    def __init__(self, page: Page) -> None:
        self.messages: list[str] = []
        page.on("pageerror", lambda exc: self.messages.append(f"pageerror: {exc}"))
        page.on("console", self._console)

    def _console(self, message: Any) -> None:
        text = message.text
        # A refused request shows as a failed resource load; the page shows the
        # error itself, so only script and policy errors count here.
        if message.type == "error" and "status of" not in text:
            self.messages.append(text)


def tab_to(page: Page, selector: str, *, back: bool = False, limit: int = 80) -> None:
    """Press Tab (Shift+Tab with `back`) until the focus is on `selector`."""
    key = "Shift+Tab" if back else "Tab"
    for _ in range(limit):
        page.keyboard.press(key)
        if page.evaluate(
            "s => !!document.activeElement && document.activeElement.matches(s)",
            selector,
        ):
            return
    raise AssertionError(f"{key} never reached {selector}")


def focus_is_visible(page: Page) -> bool:
    return bool(
        page.evaluate(
            "() => getComputedStyle(document.activeElement).outlineStyle !== 'none'"
        )
    )


_axe = Axe()


def blocking_violations(page: Page) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now."""
    results = _axe.run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + ", ".join(str(n["target"]) for n in v["nodes"][:3])
        for v in results.response["violations"]
        if v["impact"] in BLOCKING_IMPACTS
    ]


def screenshot(page: Page, name: str, width_name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}-{width_name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def overflows_horizontally(page: Page) -> bool:
    return bool(
        page.evaluate(
            "() => document.documentElement.scrollWidth > window.innerWidth + 1"
        )
    )
