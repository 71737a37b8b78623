"""Process start-up hooks: apps register them in AppConfig.ready, kimberly/ runs them.

kimberly/ sits below every app and imports none of them. A process that wants
the apps' warm-up work done before its first request or task (gunicorn after
fork, each Celery worker child) calls run_warmups(); what that work is (loading
the embedding model, say) is the registering app's business.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)

_warmups: list[Callable[[], None]] = []


def register_warmup(fn: Callable[[], None]) -> None:
    """Run `fn` when a serving process starts (idempotent per function)."""
    if fn not in _warmups:
        _warmups.append(fn)


def run_warmups(*, in_thread: bool = False) -> None:
    """Run every registered warm-up; a failing one is logged and never fatal.

    in_thread: a Celery child must report ready within worker_proc_alive_timeout,
    so it warms up in a daemon thread instead of before it answers.
    """

    def run() -> None:
        for fn in list(_warmups):
            try:
                fn()
            except Exception:
                logger.exception("warm-up %s failed", getattr(fn, "__name__", fn))

    if in_thread:
        threading.Thread(target=run, name="warm-up", daemon=True).start()
    else:
        run()
