"""Walk the window's views as a new user would, on a real X server, and screenshot each step.

    Xvfb :95 -screen 0 1600x1000x24 &
    DISPLAY=:95 .venv/bin/python tools/walk_window.py [OUT_DIR] [--docs]

Each step is saved as OUT_DIR/NN-name.png with ImageMagick's `import -window root` (dialogs
included, as seen on screen). With ``--docs`` the views this walk owns are also saved into docs/
from the window itself: screenshot-empty.png (connection panel), screenshot-diagnostics.png
(charts and health), screenshot-requests.png (request inspector), screenshot-export.png
(export with All/None and the time crop), screenshot-not-recording.png (the file taken away
while the demo sends). The map shows its offline grid (no network).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.ui.launch import prepare_webengine  # noqa: E402

prepare_webengine()

from PySide6.QtWidgets import QApplication, QWidget  # noqa: E402

from app.ui.event_loop import WindowEventLoop  # noqa: E402
from app.ui.main_window import MainWindow  # noqa: E402
from app.ui.rendering import choose_rendering  # noqa: E402
from app.ui.settings import AppSettings  # noqa: E402
from app.ui.tile_scheme import register_scheme  # noqa: E402
from tests.ui.conftest import post  # noqa: E402

TOKEN = "Xq3v9u2Kd8s7Lm1Pz0aT"


class Walk:
    def __init__(self, out: Path, docs: Path | None) -> None:
        self.out, self.docs, self.n = out, docs, 0

    async def shot(self, name: str, widget: QWidget | None = None, doc: str | None = None) -> None:
        await asyncio.sleep(0.8)  # the loop runs Qt's events meanwhile (qasync)
        self.n += 1
        path = self.out / f"{self.n:02d}-{name}.png"
        subprocess.run(["import", "-window", "root", str(path)], check=False)
        if doc and self.docs is not None and widget is not None:
            widget.grab().save(str(self.docs / doc))
        print(path)


async def walk(window: MainWindow, shots: Walk) -> None:
    await window.start()
    await asyncio.sleep(2.5)
    await shots.shot("empty-state", window, "screenshot-empty.png")
    window.toggle_demo()
    await asyncio.sleep(8)
    window.map.call("fitAll")
    await shots.shot("demo-live")
    # A refused request beside the demo's: a wrong token, and a broken body.
    url = window.urls()[0]
    await post(url, [{"ident": "x"}], token="wrong-token")
    await post(url, raw=b'[{"ident": "broken"', token=TOKEN)
    window.tick()
    await shots.shot("status-after-refusals")
    window.tabs.setCurrentIndex(1)
    await shots.shot("requests-tab")
    rows = window.requests_model.rowCount()
    accepted = next(r for r in range(rows - 1, -1, -1) if window.requests_model.items[r].status == 200)
    inspector = window._request_details(window.requests_model.index(accepted, 0))
    inspector.replay_button.click()
    await asyncio.sleep(1.5)
    await shots.shot("request-inspector", inspector, "screenshot-requests.png")
    inspector.close()
    # Diagnostics: a device's charts (two units, two axes) and health.
    window.tabs.setCurrentWidget(window.chart_panel)
    window.side_tabs.setCurrentWidget(window.health_panel)
    window.select_device(window.device_model.idents[5])
    window.chart_panel.tick(["position.speed", "battery.level", "external.powersource.voltage"])
    window.tick()
    await shots.shot("charts-health", window, "screenshot-diagnostics.png")
    window.side_tabs.setCurrentWidget(window.inspector)
    window.tabs.setCurrentIndex(0)
    await shots.shot("inspector")
    window.connection_action.setChecked(True)
    window.tick()
    await shots.shot("connection-panel-with-data")
    window.connection_action.setChecked(False)
    window.recording_action.setChecked(False)
    await asyncio.sleep(1)
    window.tick()
    await shots.shot("recording-paused-demo-waits")
    window.recording_action.setChecked(True)
    await asyncio.sleep(4)
    window.tick()
    await shots.shot("recording-resumed")
    # The recording file taken away while the demo sends: 503s, the banner, the status.
    moved = window.db.with_name("moved-away.sqlite")
    window.db.rename(moved)
    await asyncio.sleep(4)
    window.tick()
    await shots.shot("not-recording", window, "screenshot-not-recording.png")
    moved.rename(window.db)
    await asyncio.sleep(4)
    window.tick()
    await shots.shot("recording-again")
    menu = window.menuBar().actions()[0].menu()
    menu.popup(window.mapToGlobal(window.menuBar().geometry().bottomLeft()))
    await shots.shot("file-menu")
    menu.close()
    # A recorded session: the demo's, exported with a crop and replayed.
    await window.stop_demo()
    window.new_session()
    export = window.open_export(1)
    while export.reading:
        await asyncio.sleep(0.05)
    export.devices.item(0).setCheckState(export.devices.item(0).checkState().Unchecked)
    export.crop.from_slider.setValue(400)
    export.crop.to_slider.setValue(850)
    await shots.shot("export-crop", export, "screenshot-export.png")
    export.path.setText(str(shots.out / "walk-export.gpx"))
    export.start()  # written by a child process; the dialog says what it wrote
    while export.thread is not None:
        await asyncio.sleep(0.05)
    await shots.shot("export-written", export)
    export.close()
    browser = window.open_sessions()
    while browser.reading:
        await asyncio.sleep(0.05)
    await shots.shot("sessions", browser)
    browser.close()
    window.enter_replay(1)
    while window.replay_opening:
        await asyncio.sleep(0.05)
    if window.replay is None:
        raise SystemExit(f"replay did not open: {window.statusBar().currentMessage()}")
    source = window.replay.source
    window.replay.seek(source.start + (source.end - source.start) * 0.5)
    while window.replay.seeking:
        await asyncio.sleep(0.05)
    window.tick()
    await shots.shot("replay")
    window.leave_replay()
    await window.shutdown()


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 and not sys.argv[1].startswith("--") else Path("/tmp/walk")
    out.mkdir(parents=True, exist_ok=True)
    docs = ROOT / "docs" if "--docs" in sys.argv else None
    register_scheme()
    app = QApplication(sys.argv[:1])
    print(choose_rendering())
    loop = WindowEventLoop(app)
    asyncio.set_event_loop(loop)
    with tempfile.TemporaryDirectory() as tmp:
        window = MainWindow(AppSettings(port=0, token=TOKEN, tile_url=""), Path(tmp) / "walk.sqlite")
        window.resize(1440, 900)
        window.move(0, 0)
        window.show()
        with loop:
            loop.run_until_complete(walk(window, Walk(out, docs)))
    os._exit(0)  # QtWebEngine's teardown at interpreter exit is not needed here


if __name__ == "__main__":
    main()
