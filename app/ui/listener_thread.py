"""The window's HTTP listener on a thread of its own, with its own asyncio loop.

On the window's loop, a request waited for every turn of the loop it needed (accept, read,
answer: three or four) behind whatever else was due on that turn — a slice of the fleet fold, a
frame step, a JavaScript call to the map, a garbage-collection pass. Under a backlog that made a
`GET /status` take p99 ~120–190 ms although answering it takes 0.1 ms (benchmarks/gui_backlog.py).
Here the listener (aiohttp, body parsing, the recorder's commit round trip) runs on a plain
asyncio loop in a `trackmon-listener` thread, so a request waits at most for that loop's current
step and for the GIL (handed over every 1 ms in this process, `GIL_SWITCH_S`), never for the
window's drawing.

What crosses between the threads is plain data (`RequestEvent`), sent to the window through
`ThreadBridge` (weak references to the receiving methods, delivered on the GUI thread); the
listener thread holds no Qt object and no bound method of one. The listener answers a batch once
it is committed: the window's live fleet is folded in another process from the committed batches
(`store/live_fold`), so nothing here waits for the window.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from app.server.listener import RequestEvent
from app.server.service import ListenerService
from app.ui.thread_bridge import ThreadBridge

T = TypeVar("T")


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
    """The listener's request callback, run on the listener thread: it passes each answered
    POST to the window's receiver on the GUI thread. Made on the GUI thread. (Batches need no
    handing over: the recorder's deriver process folds them and sends the window frames,
    `ui/live_feed`.)"""

    def __init__(self, on_request: Callable[[RequestEvent], None]) -> None:
        self._requests = ThreadBridge(on_request)

    def request(self, event: RequestEvent) -> None:
        """Listener thread: any answered POST."""
        self._requests.send(event)
