"""The window's live view comes from the recorder's deriver process: when that process is started
again (killed, out of memory), the view starts over from the session's start, whole and once —
not doubled, and without rows for devices it no longer has."""

from __future__ import annotations

import os
import signal
import time

from tests.store.test_deriver import deriver_children
from tests.store.test_live_fold import kill_deriver
from tests.ui.conftest import post, run, wait_until


def batch(first: int, count: int, devices: int) -> list[dict]:
    return [{"ident": f"dev-{i % devices}", "timestamp": 1_700_000_000 + first + i, "position.latitude": 50.0,
             "position.longitude": 14.0 + i * 1e-5} for i in range(count)]


def test_the_live_view_starts_over_whole_when_the_folding_process_is_started_again(loop, make_window) -> None:
    window = make_window()

    async def first() -> None:
        assert await post(window.urls()[0], batch(0, 60, 6)) == 200
        await wait_until(lambda: window.log_model.rowCount() == 60 and window.device_model.rowCount() == 6,
                         what="the first batch shown")

    run(loop, first())
    kill_deriver()

    async def more() -> None:
        assert await post(window.urls()[0], batch(100, 50, 5)) == 200  # the recorder starts another deriver
        await wait_until(lambda: window.live_fleet.total == 110 and window.live_feed.caught_up(), what="refolded")
        await wait_until(lambda: window.log_model.rowCount() == 110, what="the log shown again")

    run(loop, more())
    window.frame()
    window.tick()  # every row's cells are read: none for a device the fleet does not have
    assert window.recorder.deriver_restarts == 1
    assert sorted(window.device_model.rows) == sorted(window.live_fleet.devices) == [f"dev-{i}" for i in range(6)]
    seqs = [e.seq for e in window.log_model.items]
    assert seqs == sorted(set(seqs)) and len(seqs) == 110  # each message once


def test_the_status_bar_says_when_the_live_view_is_behind_the_recording(loop, make_window) -> None:
    """... and the map draws less often meanwhile (`ui/map_feed`: its CPU is what the fold needs)."""
    window = make_window()
    lag = window.status_line.lag

    async def first() -> None:
        assert await post(window.urls()[0], batch(0, 40, 4)) == 200
        await wait_until(lambda: window.live_fleet.total == 40 and window.live_feed.caught_up(), what="shown")

    run(loop, first())
    window.tick()
    assert lag.isHidden() and not window.map_feed.catching_up
    (child,) = deriver_children(fold=True)
    os.kill(child, signal.SIGSTOP)  # the fold falls behind (as during a backlog the machine cannot keep up with)
    try:
        async def more() -> None:
            for first in range(100, 400, 100):
                assert await post(window.urls()[0], batch(first, 100, 4)) == 200  # recorded all the same
        run(loop, more())
        time.sleep(2.1)  # the oldest not shown has waited long enough to be worth saying
        window.tick()
        assert not lag.isHidden()
        assert lag.text().startswith("Catching up: 300 recorded messages not shown yet (")
        assert window.live_fleet.total == 40
        assert window.map_feed.catching_up and window.map_feed.gap() == window.map_feed.catching_up_gap_s
    finally:
        os.kill(child, signal.SIGCONT)

    async def caught_up() -> None:
        await wait_until(lambda: window.live_fleet.total == 340 and window.live_feed.caught_up(), what="caught up")

    run(loop, caught_up())
    window.tick()
    assert lag.isHidden() and not window.map_feed.catching_up
