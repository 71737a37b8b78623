"""The canary: a marker the test suite stores in users' content, which no log line
may ever show.

The shared fixtures put it into what the whole suite stores: the default memory
of memory/tests/factories.py `memory_for` and the stand-in model server's
default reply (tests/standins/openai_server.py), which every chat test saves as
the assistant's message; tests/test_log_hygiene.py drives the other paths
(search queries, edits, chat messages, imports, failures) with it. Every log
record of a test run goes to a file as well (settings.TEST_LOG_FILE, at the
production level INFO); when the run ends the root conftest scans that file, and
the logs of the worker and beat processes tests started, for the canary and the
secrets below, and fails the run if one shows up.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

# Lower case, one word: what a tokenizer, a lower() or a JSON escape leaves intact.
CANARY = "zqcanary7431"


def needles() -> dict[str, str]:
    """What must never be in a log line, by what it is."""
    from django.conf import settings

    from users.tests.factories import DEFAULT_PASSWORD

    return {
        "stored content (the canary)": CANARY,
        "the test users' password": DEFAULT_PASSWORD,
        "SECRET_KEY": settings.SECRET_KEY,
    }


def find_leaks(paths: Iterable[Path]) -> list[str]:
    """`path:line: what` for every line of `paths` that shows a needle."""
    found = {what: needle.lower() for what, needle in needles().items()}
    leaks = []
    for path in paths:
        if not path.is_file():
            continue
        with path.open(encoding="utf-8", errors="replace") as lines:
            for number, line in enumerate(lines, 1):
                low = line.lower()
                leaks += [
                    f"{path}:{number}: {what}: {line.strip()[:300]}"
                    for what, needle in found.items()
                    if needle in low
                ]
    return leaks
