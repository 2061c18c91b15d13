"""One round of everything a user does beside live recording, driven through the real window:
import a file, export the live session, replay a session, switch to a new session.

Shared by the stress test (tests/ui/test_stress.py, bounded, in `make test`) and the soak run
(benchmarks/soak.py, 30 minutes, by hand), so both exercise the same paths.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.ui.main_window import MainWindow
from app.ui.session_browser import SessionBrowser


async def until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Let the loop run until ``condition()`` is truthy; AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return value


def write_track_csv(path: Path, cycle: int, rows: int) -> None:
    """A track file in the CSV shape `trackmon export` writes; its content differs per cycle."""
    lines = ["ident,name,time_utc,latitude,longitude"]
    lines += [f"imported-{cycle},Import {cycle},2025-01-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z,"
              f"{48 + i * 1e-5 + cycle * 1e-3:.6f},11.000000" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")


async def churn_cycle(window: MainWindow, browser: SessionBrowser, workdir: Path, cycle: int, *,
                      import_rows: int = 2000, replay_s: float = 0.3, timeout: float = 120) -> None:
    """Import, export, replay and switch session once; raises AssertionError if any step fails."""
    track = workdir / f"import-{cycle}.csv"
    write_track_csv(track, cycle, import_rows)
    finished: list[str] = []
    browser.import_finished.connect(finished.append)
    browser.import_path(track)
    try:
        await until(lambda: finished, timeout, "import")
    finally:
        browser.import_finished.disconnect(finished.append)
    assert finished == [""], f"import failed: {finished}"
    track.unlink()

    target = workdir / f"export-{cycle}.gpx"
    dialog = window.open_export(window.recorder.session_id)
    await until(lambda: not dialog.reading, timeout, "the export dialog to read the session")
    dialog.path.setText(str(target))
    dialog.start()
    await until(lambda: dialog.thread is None, timeout, "export")
    status = dialog.status.text()
    dialog.close()
    dialog.deleteLater()
    assert status.startswith("Wrote"), f"export failed: {status}"
    target.unlink(missing_ok=True)

    browser.refresh()
    await until(lambda: not browser.reading, timeout, "the session list")
    window.enter_replay(max(s.id for s in browser.sessions if s.id != window.recorder.session_id))
    await until(lambda: not window.replay_opening and window.replay is not None, timeout, "the replay to open")
    window.replay.seek((window.replay.source.start + window.replay.source.end) / 2)
    await until(lambda: not window.replay.seeking, timeout, "the replay seek")
    window.replay_bar.speed.setCurrentIndex(window.replay_bar.speed.count() - 1)
    window.replay_bar.play.click()
    await asyncio.sleep(replay_s)
    window.leave_replay()

    window.new_session()
