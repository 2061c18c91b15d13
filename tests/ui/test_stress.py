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
from pathlib import Path

import aiohttp
import orjson
from PySide6.QtCore import QTimer

from tests.ui.conftest import TOKEN, run, wait_until

SECONDS = float(os.environ.get("TRACKMON_STRESS_SECONDS", "20"))
#: A loop that does not answer for this long is frozen, not slow (speed is measured in benchmarks/).
FROZEN_MS = 3000
DEVICES = 40
BATCH = 50


def write_csv(path: Path, cycle: int, rows: int = 2000) -> None:
    """A track file of the shape `export --format csv` writes; content differs per cycle."""
    lines = ["ident,name,time_utc,latitude,longitude"]
    lines += [f"imported-{cycle},Import {cycle},2025-01-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z,"
              f"{48 + i * 1e-5 + cycle * 1e-3:.6f},11.000000" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")


def recorded_messages(db: Path, prefix: str) -> dict[tuple[str, float], int]:
    """How many times each (ident, timestamp) of the live feed is in the recording's tracks."""
    conn = sqlite3.connect(db)
    try:
        counts: dict[tuple[str, float], int] = {}
        for ident, rows in conn.execute("SELECT ident, rows FROM tracks WHERE ident LIKE ?", (prefix + "%",)):
            for row in orjson.loads(rows):
                key = (ident, row[2])
                counts[key] = counts.get(key, 0) + 1
        return counts
    finally:
        conn.close()


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
    cycles = {"imports": 0, "exports": 0, "replays": 0, "sessions": 0}
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
        browser = window.open_sessions()
        cycle = 0
        while time.monotonic() < deadline:
            cycle += 1
            # import a file (worker thread) ...
            track = tmp_path / f"import-{cycle}.csv"
            write_csv(track, cycle)
            finished: list[str] = []
            browser.import_finished.connect(finished.append)
            browser.import_path(track)
            await wait_until(lambda: finished, timeout=60, what="import")  # noqa: B023
            browser.import_finished.disconnect(finished.append)
            assert finished == [""], finished
            cycles["imports"] += 1
            # ... export the session being recorded (worker thread) ...
            live_session = window.recorder.session_id
            dialog = window.open_export(live_session)
            dialog.path.setText(str(tmp_path / f"export-{cycle}.gpx"))
            dialog.start()
            await wait_until(lambda: dialog.thread is None, timeout=60, what="export")  # noqa: B023
            assert dialog.status.text().startswith("Wrote"), dialog.status.text()
            dialog.close()
            dialog.deleteLater()
            cycles["exports"] += 1
            # ... replay the imported session, seek and play, back to live ...
            browser.refresh()
            imported = max(s.id for s in browser.sessions)
            window.enter_replay(imported)
            window.replay.seek((window.replay.source.start + window.replay.source.end) / 2)
            window.replay_bar.speed.setCurrentIndex(window.replay_bar.speed.count() - 1)
            window.replay_bar.play.click()
            await asyncio.sleep(0.3)
            window.leave_replay()
            cycles["replays"] += 1
            # ... and switch the live recording to a new session.
            window.new_session()
            cycles["sessions"] += 1
            await asyncio.sleep(0.05)
        browser.close()
        browser.deleteLater()

    async def scenario() -> None:
        heartbeat.start()
        try:
            await asyncio.gather(feed(), churn())
            await wait_until(lambda: window.live_fleet.total >= 0 and not window.pending_requests, what="frames")
        finally:
            heartbeat.stop()

    try:
        run(loop, scenario(), timeout=SECONDS + 120)
    finally:
        gc.callbacks.remove(on_collect)

    assert all(count >= 2 for count in cycles.values()), cycles
    assert collections_off_gui == [], f"garbage collected in worker threads: {set(collections_off_gui)}"
    assert worst_stall[0] < FROZEN_MS, f"the event loop did not answer for {worst_stall[0]:.0f} ms"
    assert len(acked) > 1000
    window.new_session()  # writes the last chunks of the live session; then read the file as a user would
    recorded = recorded_messages(window.db, "live-")
    assert {key: n for key, n in recorded.items() if n != 1} == {}, "messages recorded more than once"
    assert set(acked) <= set(recorded), f"{len(set(acked) - set(recorded))} acknowledged messages lost"
