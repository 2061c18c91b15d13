"""The window's asyncio loop: qasync's, with every delayed callback kept on one Qt timer.

qasync starts a Qt timer for each `call_later` and kills it only when it fires, even after the
handle was cancelled. aiohttp and the listener arm a few such timers per request (keep-alive,
header and body deadlines: 10 to 120 s) and cancel them almost at once, so under a steady stream
Qt carries thousands of dead timers, and registering or killing each of the many short ones
walks that list: at 2,000 msg/s a quarter of the GUI thread went to `QObject::killTimer`
(py-spy, benchmarks/gui_everyday.py). Here delayed callbacks wait in a heap, cancelled ones are
dropped when they reach its top, and one single-shot Qt timer is armed for the earliest; callbacks
due now (`call_soon`) still go through qasync unchanged.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections.abc import Callable
from contextvars import Context
from typing import Any

import qasync
from PySide6.QtCore import QTimer

#: Timers due within this much of now run together (Qt's timer resolution is a millisecond).
SLACK = 0.0005


class WindowEventLoop(qasync.QEventLoop):
    """qasync's event loop with delayed callbacks in a heap under one Qt timer."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._delayed: list[tuple[float, int, asyncio.TimerHandle]] = []
        self._order = itertools.count()
        self._wake = QTimer()
        self._wake.setSingleShot(True)
        self._wake.timeout.connect(self._run_due)
        self._wake_at: float | None = None

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any,
                   context: Context | None = None) -> asyncio.Handle:
        """As asyncio's: ``callback(*args)`` after ``delay`` seconds; a cancellable handle."""
        if delay <= 0:
            return super().call_later(delay, callback, *args, context=context)
        return self.call_at(self.time() + delay, callback, *args, context=context)

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any,
                context: Context | None = None) -> asyncio.Handle:
        """As asyncio's: ``callback(*args)`` at loop time ``when``."""
        if when <= self.time():
            return super().call_later(0, callback, *args, context=context)
        handle = asyncio.TimerHandle(when, callback, args, self, context=context)
        heapq.heappush(self._delayed, (when, next(self._order), handle))
        self._arm()
        return handle

    def _arm(self) -> None:
        """Point the Qt timer at the earliest live callback (or stop it when there is none)."""
        delayed = self._delayed
        while delayed and delayed[0][2].cancelled():
            heapq.heappop(delayed)
        if not delayed:
            self._wake.stop()
            self._wake_at = None
            return
        when = delayed[0][0]
        if self._wake_at is not None and self._wake_at <= when and self._wake.isActive():
            return  # already armed for this or an earlier moment
        self._wake_at = when
        self._wake.start(max(0, math.ceil((when - self.time()) * 1000)))
        if len(delayed) > 4096 and sum(1 for *_, h in delayed if h.cancelled()) > len(delayed) // 2:
            self._delayed = [entry for entry in delayed if not entry[2].cancelled()]
            heapq.heapify(self._delayed)

    def _run_due(self) -> None:
        """Run every callback that is due, then arm for the next."""
        self._wake_at = None
        now = self.time() + SLACK
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            handle = heapq.heappop(delayed)[2]
            if not handle.cancelled():
                handle._run()
        self._arm()

    def close(self) -> None:
        """Close the loop; delayed callbacks not yet due are dropped, as asyncio's loops do."""
        self._wake.stop()
        self._delayed.clear()
        super().close()
