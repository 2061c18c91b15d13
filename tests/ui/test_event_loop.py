"""The window's loop runs delayed callbacks in order, on time, and never runs a cancelled one —
with thousands of them cancelled, as aiohttp's and the listener's deadlines are."""

from __future__ import annotations

import asyncio
import time

from app.ui.event_loop import WindowEventLoop
from tests.ui.conftest import run


def test_delayed_callbacks_run_in_order_and_cancelled_ones_never(loop) -> None:
    assert isinstance(loop, WindowEventLoop)
    ran: list[str] = []

    async def scenario() -> None:
        started = time.monotonic()
        dead = [loop.call_later(0.05 + i / 100_000, ran.append, "cancelled") for i in range(5_000)]
        for handle in dead:
            handle.cancel()
        loop.call_later(0.12, ran.append, "third")
        loop.call_later(0.02, ran.append, "first")
        loop.call_at(loop.time() + 0.06, ran.append, "second")
        loop.call_later(0, ran.append, "now")
        await asyncio.sleep(0.2)
        assert ran == ["now", "first", "second", "third"]
        assert time.monotonic() - started >= 0.12  # nothing ran early
        async with asyncio.timeout(0.05):  # asyncio's own timeouts use call_at and cancel
            await asyncio.sleep(0.01)
        try:
            async with asyncio.timeout(0.02):
                await asyncio.sleep(1)
        except TimeoutError:
            ran.append("timed out")

    run(loop, scenario())
    assert ran[-1] == "timed out"
    assert len(loop._delayed) < 10  # the cancelled ones are gone once their time has passed
