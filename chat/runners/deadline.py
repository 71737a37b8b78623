"""Reading a blocking iterator under deadlines: for the first item, for every gap
between items, and for the whole.

A socket read timeout restarts with every byte, so a server that drips a reply
forever would keep a caller waiting past any read timeout. Here the reads happen
in a worker thread that stamps each item as it arrives, and the caller waits on
a queue only until the next deadline; a read still blocked then is abandoned
(the worker ends at its own read timeout or at the next item, whichever comes
first). The deadlines are judged by the worker's stamps, not by when the caller
comes back for the next item, so a slow consumer (a slow client of a streamed
reply) never turns a reply that arrived in time into a timeout.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

T = TypeVar("T")

Phase = Literal["first_byte", "idle", "total"]


@dataclass(frozen=True)
class Deadlines:
    """When the items of one call must come (`time.monotonic()` values)."""

    first: float  # the first item by then
    total: float  # every item, and the end, by then
    idle: float | None = None  # then at most this many seconds after the last one

    def next_limit(self, last: float | None) -> tuple[float, Phase]:
        """The time by which the next item must come, after one stamped `last`."""
        if last is None and self.first <= self.total:
            return self.first, "first_byte"
        if last is not None and self.idle is not None and last + self.idle < self.total:
            return last + self.idle, "idle"
        return self.total, "total"


class DeadlinePassed(Exception):
    """A deadline came before the iterator finished; `phase` says which one."""

    def __init__(self, phase: Phase) -> None:
        super().__init__(phase)
        self.phase = phase


def iterate_until(
    produce: Callable[[], Generator[T, None, None]], deadlines: Deadlines
) -> Generator[T, None, None]:
    """The items of `produce()` (called in a worker thread) as they come; raises
    DeadlinePassed when one of `deadlines` passes, and re-raises in the caller
    whatever `produce` raised."""
    inbox: queue.SimpleQueue[tuple[str, Any, float]] = queue.SimpleQueue()
    stop = threading.Event()

    def work() -> None:
        try:
            with contextlib.closing(produce()) as items:
                for item in items:
                    if stop.is_set():
                        return
                    inbox.put(("item", item, time.monotonic()))
            inbox.put(("done", None, time.monotonic()))
        except Exception as exc:  # noqa: BLE001 - handed to the caller, raised there
            inbox.put(("error", exc, time.monotonic()))

    threading.Thread(target=work, name="model-runner-call", daemon=True).start()
    last: float | None = None
    try:
        while True:
            limit, phase = deadlines.next_limit(last)
            try:
                # Timeout 0 still takes an item already waiting (the caller was slow).
                kind, value, stamp = inbox.get(timeout=max(limit - time.monotonic(), 0))
            except queue.Empty:
                raise DeadlinePassed(phase) from None
            if stamp > limit:  # it came, but late: the caller was away meanwhile
                raise DeadlinePassed(phase)
            if kind == "done":
                return
            if kind == "error":
                raise value
            last = stamp
            yield value
    finally:
        stop.set()
