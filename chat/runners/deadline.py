"""Reading a blocking iterator under a total deadline.

A socket read timeout restarts with every byte, so a server that drips a reply
slowly (or stalls mid-stream) would keep a caller waiting far past any read
timeout. Here the reads happen in a worker thread and the caller waits on a
queue only until the deadline; a read still blocked then is abandoned (the
worker ends at its own read timeout or at the next item, whichever comes first).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Generator
from typing import Any, TypeVar

T = TypeVar("T")


class DeadlinePassed(Exception):
    """The deadline came before the iterator finished."""


def iterate_until(
    produce: Callable[[], Generator[T, None, None]], deadline: float
) -> Generator[T, None, None]:
    """The items of `produce()` (called in a worker thread) as they come; raises
    DeadlinePassed at `deadline` (a `time.monotonic()` value), and re-raises in
    the caller whatever `produce` raised."""
    inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
    stop = threading.Event()

    def work() -> None:
        try:
            with contextlib.closing(produce()) as items:
                for item in items:
                    if stop.is_set():
                        return
                    inbox.put(("item", item))
            inbox.put(("done", None))
        except Exception as exc:  # noqa: BLE001 - handed to the caller, raised there
            inbox.put(("error", exc))

    threading.Thread(target=work, name="model-runner-call", daemon=True).start()
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeadlinePassed
            try:
                kind, value = inbox.get(timeout=remaining)
            except queue.Empty:
                raise DeadlinePassed from None
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
