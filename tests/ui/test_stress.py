"""The window under everything at once: live batches flowing while imports, exports, replays and
session switches run over and over, with the event loop's responsiveness watched throughout.

This is the test that would have caught the freeze of issue 9 (the cyclic garbage collector
freeing a Qt object in the import thread, deadlocking against the GUI thread): it fails on a
deadlock (pytest-timeout's thread method dumps every stack), on a loop that stops answering for
seconds, on garbage collection off the GUI thread, and on any acknowledged message that is not
in the recording exactly once. It runs for a bounded time (TRACKMON_STRESS_SECONDS, default 20).
"""

from __future__ import annotations

import asyncio
import gc
import os
import sqlite3
import threading
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

import aiohttp
import orjson
from PySide6.QtCore import QTimer

from app.store.points import PointFilter, iter_points
from tests.store.test_deriver import track_rows
from tests.ui.churn import churn_cycle
from tests.ui.conftest import TOKEN, run, wait_until

SECONDS = float(os.environ.get("TRACKMON_STRESS_SECONDS", "20"))
#: A loop that does not answer for this long is frozen, not slow (speed is measured in benchmarks/).
FROZEN_MS = 3000
DEVICES = 40
BATCH = 50


def recorded_messages(db: Path, prefix: str) -> dict[tuple[str, float], int]:
    """How many times each (ident, timestamp) of the live feed is in the recording, read as exports
    and replay read it: the track chunks, and the batches not chunked yet."""
    with closing(sqlite3.connect(db)) as conn:
        counts: dict[tuple[str, float], int] = {}
        for (session,) in conn.execute("SELECT id FROM sessions").fetchall():
            for point in iter_points(conn, PointFilter(session)):
                if point.ident.startswith(prefix):
                    key = (point.ident, point.ts)
                    counts[key] = counts.get(key, 0) + 1
        return counts


def chunked_messages(db: Path, prefix: str) -> dict[tuple[str, float], int]:
    """The same, in the track chunks alone."""
    return dict(Counter((ident, row[3]) for ident, rows in track_rows(db).items() if ident.startswith(prefix)
                        for row in rows))


def test_window_stays_responsive_and_loses_nothing_under_everything_at_once(loop, make_window, tmp_path) -> None:
    window = make_window()
    url = window.urls()[0]
    gui_thread = threading.get_ident()
    collections_off_gui: list[str] = []

    def on_collect(phase: str, info: dict) -> None:
        if phase == "start" and threading.get_ident() != gui_thread:
            collections_off_gui.append(threading.current_thread().name)

    gc.callbacks.append(on_collect)
    worst_stall = [0.0]
    last_beat = [time.perf_counter()]

    def beat() -> None:
        now = time.perf_counter()
        worst_stall[0] = max(worst_stall[0], (now - last_beat[0]) * 1000.0)
        last_beat[0] = now

    heartbeat = QTimer(interval=10, timeout=beat)
    acked: list[tuple[str, float]] = []
    cycles = 0
    deadline = time.monotonic() + SECONDS

    async def feed() -> None:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
        sequence = 0
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                batch = []
                for _ in range(BATCH):
                    sequence += 1
                    batch.append({"ident": f"live-{sequence % DEVICES}", "timestamp": 1_767_225_600 + sequence,
                                  "position.latitude": 50 + (sequence % 997) * 1e-4,
                                  "position.longitude": 10 + (sequence % DEVICES) * 1e-3,
                                  "position.speed": sequence % 90})
                async with session.post(url, data=orjson.dumps(batch), headers=headers) as reply:
                    await reply.read()
                    if reply.status == 200:
                        acked.extend((m["ident"], float(m["timestamp"])) for m in batch)
                await asyncio.sleep(0.01)

    async def churn() -> None:
        nonlocal cycles
        browser = window.open_sessions()
        while time.monotonic() < deadline:
            await churn_cycle(window, browser, tmp_path, cycles + 1)
            cycles += 1
        browser.close()
        browser.deleteLater()

    async def scenario() -> None:
        heartbeat.start()
        try:
            await asyncio.gather(feed(), churn())
            await wait_until(lambda: not window.pending_requests and window.live_feed.caught_up(),
                             what="every acknowledged batch shown")
        finally:
            heartbeat.stop()

    try:
        run(loop, scenario(), timeout=SECONDS + 120)
    finally:
        gc.callbacks.remove(on_collect)

    assert cycles >= 2, f"only {cycles} rounds of import, export, replay and session switch"
    assert collections_off_gui == [], f"garbage collected in worker threads: {set(collections_off_gui)}"
    assert worst_stall[0] < FROZEN_MS, f"the event loop did not answer for {worst_stall[0]:.0f} ms"
    assert len(acked) >= 5 * BATCH, "live batches kept flowing while the rest ran"
    window.new_session()  # the live session ends; then read the file as a user would
    recorded = recorded_messages(window.db, "live-")
    assert {key: n for key, n in recorded.items() if n != 1} == {}, "messages recorded more than once"
    assert set(acked) <= set(recorded), f"{len(set(acked) - set(recorded))} acknowledged messages lost"
    # The chunks' process gives way to the live view (`store/deriver.BACKGROUND_NICE`): once the
    # load is gone, it catches up, and the chunks alone hold every message once.
    deadline = time.monotonic() + 60
    while (chunked := chunked_messages(window.db, "live-")) != recorded:
        assert time.monotonic() < deadline, f"{len(set(recorded) - set(chunked))} messages never chunked"
        assert {key: n for key, n in chunked.items() if n != 1} == {}, "messages chunked more than once"
        time.sleep(0.2)
