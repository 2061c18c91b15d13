"""Regenerate the screenshots in docs/ from the real window, offscreen.

    QT_QPA_PLATFORM=offscreen .venv/bin/python tools/screenshots.py

Starts the window on a temporary recording, takes the empty state, starts the demo feed (which
begins with ten minutes of history, so trails show) and grabs the window again, then replays the
demo's session; then, in a second window, a backlog the views are catching up with. No network:
the map shows its offline grid.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import aiohttp  # noqa: E402
import psutil  # noqa: E402

from app.ui.launch import prepare_webengine  # noqa: E402

prepare_webengine()

from PySide6.QtWidgets import QApplication  # noqa: E402

from app.ui.event_loop import WindowEventLoop  # noqa: E402
from app.ui.gc_guard import GuiGarbageCollector  # noqa: E402
from app.ui.main_window import MainWindow  # noqa: E402
from app.ui.settings import AppSettings  # noqa: E402
from app.ui.tile_scheme import register_scheme  # noqa: E402
from benchmarks.feeder import make_batches  # noqa: E402


async def shoot(window: MainWindow, docs: Path) -> None:
    await window.start()
    await asyncio.sleep(2.5)
    window.grab().save(str(docs / "screenshot-empty.png"))
    window.toggle_demo()  # the demo feed starts with ten minutes of history, so trails show
    await asyncio.sleep(6)
    window.map.call("fitAll")
    window.device_table.selectRow(3)
    await asyncio.sleep(0.5)
    window.map.call("fitAll")
    await asyncio.sleep(3)
    window.grab().save(str(docs / "screenshot-live.png"))
    # Diagnostics: the selected device's health and two parameters charted.
    window.tabs.setCurrentWidget(window.chart_panel)
    window.side_tabs.setCurrentWidget(window.health_panel)
    window.select_device(window.device_model.idents[5])
    window.chart_panel.tick(["position.speed", "battery.level"])
    window.tick()
    await asyncio.sleep(1.0)
    window.grab().save(str(docs / "screenshot-diagnostics.png"))
    window.tabs.setCurrentIndex(0)
    window.side_tabs.setCurrentWidget(window.inspector)
    # Replay: close the demo's session, open it on the timeline, play a little at 60x.
    await window.stop_demo()
    window.new_session()
    window.enter_replay(1)
    while window.replay_opening:
        await asyncio.sleep(0.05)
    if window.replay is None:
        raise SystemExit(f"replay did not open: {window.statusBar().currentMessage()}")
    source = window.replay.source
    window.replay.seek(source.start + (source.end - source.start) * 0.35)
    while window.replay.seeking:
        await asyncio.sleep(0.05)
    window.replay_bar.speed.setCurrentIndex(4)
    window.replay.play()
    await asyncio.sleep(4)
    window.replay.pause()
    window.device_table.selectRow(2)
    window.tick()
    await asyncio.sleep(1.5)
    window.grab().save(str(docs / "screenshot-replay.png"))
    await window.shutdown()


async def shoot_catching_up(window: MainWindow, docs: Path) -> None:
    """A backlog the window cannot show as fast as it is recorded: the fold's process is paused
    (SIGSTOP) while 55,000 messages are posted, so the status bar says how far behind the views are."""
    await window.start()
    url = window.urls()[0]
    bodies = make_batches(60_000, 300, 1000)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {window.settings.token}"}
    async with aiohttp.ClientSession() as session:
        async def post(body: bytes) -> None:
            async with session.post(url, data=body, headers=headers) as reply:
                await reply.read()

        for body in bodies[:5]:
            await post(body)
        await asyncio.sleep(3)
        (fold,) = [child for child in psutil.Process().children() if "--fold" in child.cmdline()]
        fold.suspend()
        try:
            for body in bodies[5:]:
                await post(body)
            await asyncio.sleep(3)
            window.tick()
            await asyncio.sleep(0.5)
            window.grab().save(str(docs / "screenshot-catching-up.png"))
        finally:
            fold.resume()
    await window.shutdown()


def main() -> None:
    register_scheme()
    app = QApplication(sys.argv[:1])
    loop = WindowEventLoop(app)
    asyncio.set_event_loop(loop)
    app.setQuitOnLastWindowClosed(False)  # the first window closes before the second is shown
    collector = GuiGarbageCollector(app)  # as the app runs: no Qt object finalised off this thread

    async def both() -> None:
        # In one run of the loop: each run ends with the application's aboutToQuit, after which
        # QtWebEngine has torn itself down and a second window's page crashed the tool at exit.
        for name, scenario in (("screenshots", shoot), ("catching-up", shoot_catching_up)):
            with tempfile.TemporaryDirectory() as tmp:
                window = MainWindow(AppSettings(port=0, token="Xq3v9u2Kd8s7Lm1Pz0aT", tile_url=""),
                                    Path(tmp) / f"{name}.sqlite")
                window.resize(1440, 900)
                window.show()
                await scenario(window, ROOT / "docs")
                window.close()

    try:
        loop.run_until_complete(both())
    finally:
        collector.stop()
        loop.close()


if __name__ == "__main__":
    main()
