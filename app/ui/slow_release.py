"""Let go of a session's worth of objects a slice at a time, between the GUI thread's events.

Starting a new session, or switching between live and replay, drops a 20,000-entry message log
and a fleet's devices (trails, health state): about a million Python objects. Freeing them in one
go took ~100 ms on an idle machine, and such resets were most of the soak's stalls over a quarter
second under load. Here the emptied views show at once, and the objects they held are freed
afterwards in slices of about `SLICE_SECONDS`, each its own turn of the loop, so frames, clicks
and the listener's events run in between. Only plain Python objects come here (never a Qt
object), and they are freed on the GUI thread, like everything else in the window.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

#: GUI-thread time one slice may take (one object more at most).
SLICE_SECONDS = 0.002


class SlowRelease:
    """What one window has let go of and not freed yet (the window owns one; a replay controller
    hands its fleet to the window's)."""

    def __init__(self) -> None:
        self._waiting: deque[list[Any]] = deque()
        self._due: asyncio.AbstractEventLoop | None = None  # the loop the next slice is due on

    def later(self, items: list[Any]) -> None:
        """Take ownership of ``items`` (the caller keeps no other reference to the list) and free
        them over the next turns of the GUI thread's loop."""
        if not items:
            return
        self._waiting.append(items)
        loop = asyncio.get_event_loop()
        if self._due is not loop:  # nothing due, or due on a loop that has ended
            self._due = loop
            loop.call_soon(self._release_some, loop)

    def pending(self) -> int:
        """Objects handed over and not freed yet."""
        return sum(len(items) for items in self._waiting)

    def now(self) -> None:
        """Free everything handed over (shutdown)."""
        while self._waiting:
            self._waiting.popleft().clear()

    def _release_some(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._due is not loop:  # superseded by a slice on a newer loop
            return
        waiting = self._waiting
        try:
            deadline = time.perf_counter() + SLICE_SECONDS
            # The clock is read after every object: one device with a long trail takes milliseconds.
            while waiting and time.perf_counter() < deadline:
                items = waiting[0]
                if items:
                    items.pop()
                else:
                    waiting.popleft()
        finally:  # whatever happened, what is left still gets its turns
            if waiting and not loop.is_closed():
                loop.call_soon(self._release_some, loop)
            else:
                self._due = None
