"""The window's HTTP listener on a thread of its own, with its own asyncio loop.

On the window's loop, a request waited for every turn of the loop it needed (accept, read,
answer: three or four) behind whatever else was due on that turn — a slice of the fleet fold, a
frame step, a JavaScript call to the map, a garbage-collection pass. Under a backlog that made a
`GET /status` take p99 ~120–190 ms although answering it takes 0.1 ms (benchmarks/gui_backlog.py).
Here the listener (aiohttp, body parsing, the recorder's commit round trip) runs on a plain
asyncio loop in a `trackmon-listener` thread, so a request waits at most for that loop's current
step and for the GIL (handed over every 1 ms in this process, `GIL_SWITCH_S`), never for the
window's drawing.

What crosses between the threads is plain data (`RequestEvent`, lists of `Message`), sent to the
window through `ThreadBridge` (weak references to the receiving methods, delivered on the GUI
thread); the listener thread holds no Qt object and no bound method of one. Back-pressure: while
more than ``max_waiting`` messages have been handed over and not yet folded into the fleet, the
listener's answer to the next batch waits (the stream slows to the window's pace), but `/status`
and other requests are still answered.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

from app.core.normalize import Message
from app.server.listener import RequestEvent
from app.server.service import ListenerService
from app.ui.thread_bridge import ThreadBridge

T = TypeVar("T")


class Backlogged(Protocol):
    """What holds the window's messages not folded yet (`ui.intake.SlicedIntake`)."""

    @property
    def backlog(self) -> int: ...

#: Messages handed to the window and not yet folded in, beyond which a batch's answer waits
#: (~0.2 s of folding). Against 20,000, measured under a backlog (benchmarks/gui_backlog.py): the
#: same messages/s within 2 %, `/status` p99 32–37 → 24–27 ms and the window's own timer p99
#: 69–72 → 52–56 ms, because the listener thread then competes less with the GUI thread for the GIL.
MAX_WAITING = 5_000
#: How often a waiting answer looks again whether the window has caught up.
WAIT_STEP_S = 0.005
#: How long a thread running Python keeps the GIL while another waits for it (CPython's default is
#: 5 ms). The window's GUI thread runs Python nearly all the time under a backlog, so a request on
#: the listener thread waits about this long per turn: `/status` p99 59 → 38 ms, max 135 → 55 ms
#: at 1 ms, with the same messages/s (benchmarks/gui_backlog.py).
GIL_SWITCH_S = 0.001


class ListenerThread:
    """A thread running an asyncio loop until `stop`; coroutines are run on it from the GUI loop."""

    def __init__(self, name: str = "trackmon-listener") -> None:
        sys.setswitchinterval(GIL_SWITCH_S)  # process-wide: the window's process only (see above)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the listener's loop; await its result from the calling loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self.loop))

    def stop(self) -> None:
        """End the loop (after what is running now) and the thread."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
        if not self._thread.is_alive() and not self.loop.is_closed():
            self.loop.close()


class ThreadedService:
    """A `ListenerService` served from a `ListenerThread`; the same face to the window (``start``,
    ``stop``, ``urls``, ``port``, ``listener``)."""

    def __init__(self, service: ListenerService) -> None:
        self.service = service
        self.listener = service.listener
        self._thread: ListenerThread | None = None

    @property
    def port(self) -> int | None:
        return self.service.port

    def urls(self) -> list[str]:
        """Every URL the listener can be reached at (loopback first)."""
        return self.service.urls()

    async def start(self) -> list[str]:
        """Bind and serve on the listener thread; raises what `ListenerService.start` raises."""
        self._thread = ListenerThread()
        try:
            return await self._thread.run(self.service.start())
        except BaseException:
            self._thread.stop()
            self._thread = None
            raise

    async def stop(self) -> None:
        """Stop serving (requests in progress are finished or closed) and end the thread."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        try:
            await thread.run(self.service.stop())
        finally:
            thread.stop()


class HandOver:
    """The listener's batch and request callbacks, run on the listener thread: they pass events
    to the window's receivers on the GUI thread and hold a batch's answer while the window is
    more than ``max_waiting`` messages behind. Made on the GUI thread."""

    def __init__(self, on_batch: Callable[[RequestEvent, list[Message]], None],
                 on_request: Callable[[RequestEvent], None], intake: Backlogged,
                 max_waiting: int = MAX_WAITING) -> None:
        self._batches = ThreadBridge(self._arrived)
        self._requests = ThreadBridge(on_request)
        self._receiver = weakref.WeakMethod(on_batch)  # type: ignore[arg-type]
        self._intake = weakref.ref(intake)  # its ``backlog``: taken by the window, not folded yet
        self.max_waiting = max_waiting
        self._lock = threading.Lock()
        self._in_transit = 0  # handed over, not yet taken by the window

    @property
    def waiting(self) -> int:
        """Messages handed over and not yet folded into the fleet."""
        intake = self._intake()
        return self._in_transit + (intake.backlog if intake is not None else 0)

    def batch(self, event: RequestEvent, messages: list[Message]) -> Awaitable[None] | None:
        """Listener thread: a committed batch. Returns something to await before answering
        while the window is too far behind."""
        with self._lock:
            self._in_transit += len(messages)
        self._batches.send(event, messages)
        return self._caught_up() if self.waiting > self.max_waiting else None

    def request(self, event: RequestEvent) -> None:
        """Listener thread: any answered POST."""
        self._requests.send(event)

    async def _caught_up(self) -> None:
        while self.waiting > self.max_waiting:
            await asyncio.sleep(WAIT_STEP_S)

    def _arrived(self, event: RequestEvent, messages: list[Message]) -> None:
        """GUI thread: hand the batch to the window."""
        with self._lock:
            self._in_transit -= len(messages)
        receiver = self._receiver()
        if receiver is not None:
            receiver(event, messages)
