"""Fixtures for the desktop window: a real MainWindow offscreen on a qasync loop."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("QTWEBENGINE_DISABLE_SANDBOX", "1")  # tests may run as root

import aiohttp
import orjson
import pytest
from PySide6.QtTest import QTest

from app.ui.event_loop import WindowEventLoop
from app.ui.gc_guard import GuiGarbageCollector
from app.ui.main_window import MainWindow
from app.ui.settings import AppSettings
from app.ui.tile_scheme import register_scheme

register_scheme()  # as the app does, before pytest-qt creates the QApplication

TOKEN = "test-token-0123456789"


@pytest.fixture(scope="session")
def gui_gc(qapp) -> Iterator[GuiGarbageCollector]:
    """Garbage collection as the app does it: never automatic, only on the GUI thread. Window
    tests run import, export and writer threads beside the window, as users do."""
    collector = GuiGarbageCollector(qapp)
    yield collector
    collector.stop()


@pytest.fixture
def loop(qapp, gui_gc) -> Iterator[asyncio.AbstractEventLoop]:
    """The asyncio loop on Qt's event processing, as in the app. It is marked running from the
    start and driven by processing Qt events, because every `run_until_complete` would end with
    QApplication.exit(), whose aboutToQuit tears QtWebEngine down."""
    event_loop = WindowEventLoop(qapp, already_running=True)
    # DNS look-ups (aiohttp, asyncssh) run in the default executor; qasync's own is made of
    # QThreads that outlive a loop which is never closed, and Qt aborts at exit over them.
    executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="test-loop")
    event_loop.set_default_executor(executor)
    errors: list[dict] = []
    event_loop.set_exception_handler(lambda _, context: errors.append(context))  # any error fails the test
    asyncio.set_event_loop(event_loop)
    yield event_loop
    executor.shutdown(wait=True)
    assert not errors, f"errors on the event loop: {errors}"
    asyncio.events._set_running_loop(None)
    asyncio.set_event_loop(None)


def run(loop: asyncio.AbstractEventLoop, coroutine: Any, timeout: float = 60) -> Any:
    """Run a test coroutine on the Qt-integrated loop, failing fast if it hangs."""
    task = loop.create_task(coroutine)
    deadline = time.monotonic() + timeout
    while not task.done():
        if time.monotonic() > deadline:
            task.cancel()
            QTest.qWait(50)
            raise AssertionError(f"timed out after {timeout} s")
        QTest.qWait(5)
    return task.result()


async def wait_until(condition: Callable[[], Any], timeout: float = 20, what: str = "condition") -> Any:
    """Let the loop (and Qt) run until ``condition()`` is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@contextmanager
def threads_calling(function: Callable[..., Any]) -> Iterator[list[int]]:
    """Within the block, the idents of the threads that call ``function`` (observed with a
    profiling hook: slower, never different): which thread does a job, as a test asks it."""
    callers: list[int] = []
    code = function.__code__
    watching = True

    def watch(frame: Any, event: str, _arg: Any) -> None:
        if not watching:  # a thread started inside the block keeps the hook: it stops counting
            sys.setprofile(None)
        elif event == "call" and frame.f_code is code:
            callers.append(threading.get_ident())

    threading.setprofile(watch)
    sys.setprofile(watch)
    try:
        yield callers
    finally:
        watching = False
        sys.setprofile(None)
        threading.setprofile(None)


@contextmanager
def file_moved_away(window: Any) -> Iterator[Path]:
    """Within the block, the window's recording file is moved away (as a user might, by mistake);
    it is put back after."""
    away = window.db.with_name("away.sqlite")
    window.db.rename(away)
    try:
        yield away
    finally:
        away.rename(window.db)


def health_shown(loop: Any, window: Any, ident: str) -> None:
    """Wait until ``ident``'s full health report is in the window, and on the Health tab if that
    is the tab shown (the live fleet's comes with the next frame from the folding process once the
    device is selected)."""
    def shown() -> bool:
        report = window.fleet.health.devices.get(ident)
        on_tab = window.side_tabs.currentWidget() is window.health_panel
        return report is not None and (not on_tab or window.health_panel.device is report)

    run(loop, wait_until(shown, what=f"{ident}'s health report"))


def enter_replay(loop: Any, window: Any, session_id: int, idents: tuple[str, ...] | None = None) -> None:
    """Open a session for replay in the window (read in a file reader thread) and wait until it shows."""
    window.enter_replay(session_id, idents)
    run(loop, wait_until(lambda: not window.replay_opening and window.replay is not None
                         and window.replay.source.session_id == session_id, what="the session opened for replay"))


def open_export(loop: Any, window: Any, session_id: int) -> Any:
    """Open the export dialog for a session and wait until it has read the session."""
    dialog = window.open_export(session_id)
    run(loop, wait_until(lambda: not dialog.reading, what="the export dialog to read the session"))
    return dialog


def answer_modal(label: str, prepare: Callable[[Any], None] | None = None) -> list[Any]:
    """Once a modal dialog opens, run ``prepare(dialog)`` and click its button labelled ``label``
    (as a user would); returns a list that receives the dialog."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QAbstractButton, QApplication
    seen: list[Any] = []

    def poke() -> None:
        dialog = QApplication.activeModalWidget()
        if dialog is None:
            QTimer.singleShot(20, poke)
            return
        seen.append(dialog)
        if prepare is not None:
            prepare(dialog)
        [button] = [b for b in dialog.findChildren(QAbstractButton) if b.text().replace("&", "") == label]
        button.click()

    QTimer.singleShot(0, poke)
    return seen


async def js(window: MainWindow, script: str) -> Any:
    """Evaluate ``script`` in the map page and return its result."""
    future: asyncio.Future = asyncio.get_running_loop().create_future()
    window.map.page().runJavaScript(script, 0, lambda result: future.done() or future.set_result(result))
    return await asyncio.wait_for(future, 10)


async def map_state(window: MainWindow) -> dict:
    """What the map page shows, from its own API (once the page has loaded it: on a busy machine
    that can take seconds, and before it ``trackmon`` is not defined)."""
    await wait_until(lambda: window.map.is_ready, timeout=60, what="the map page to load")
    return orjson.loads(await js(window, "trackmon.state()"))


async def post(url: str, payload: Any = None, *, raw: bytes | None = None,
               headers: dict[str, str] | None = None, token: str | None = TOKEN) -> int:
    """POST like a stream would; returns the status."""
    sent = {"Content-Type": "application/json", **(headers or {})}
    if token:
        sent["Authorization"] = f"Bearer {token}"
    body = raw if raw is not None else orjson.dumps(payload)
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=sent) as reply:
        await reply.read()
        return reply.status


@pytest.fixture
def make_window(loop, tmp_path: Path, qtbot) -> Iterator[Callable[..., MainWindow]]:
    """Build and start windows (offline: no tiles); each is shut down after the test."""
    windows: list[MainWindow] = []

    def make(*, store: Any = None, overrides: Any = None, **changes: Any) -> MainWindow:
        settings = AppSettings(**{"port": 0, "token": TOKEN, "tile_url": "", **changes})
        window = MainWindow(settings, tmp_path / f"gui{len(windows)}.sqlite", store=store, overrides=overrides)
        window.resize(1440, 900)
        window.show()
        run(loop, window.start())
        windows.append(window)
        return window

    yield make
    for window in windows:
        run(loop, window.shutdown())
        window.close()
        window.deleteLater()
    QTest.qWait(10)
