"""The real window for a benchmark: offscreen unless DISPLAY is set, on the app's own event loop,
with the GUI-thread garbage collector the app runs with. Imports Qt only when called, so a
benchmark's headless baseline runs before any of it is loaded."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class BenchWindow:
    """What a window benchmark drives: the application, its loop, the window, the collector."""

    app: Any
    loop: Any
    window: Any
    collector: Any


def open_window(db: Path, token: str) -> BenchWindow:
    """A shown 1440×900 MainWindow recording into ``db``, its listener on a free port."""
    from app.ui.launch import prepare_webengine
    from app.ui.malloc_arenas import limit_malloc_arenas

    prepare_webengine()
    limit_malloc_arenas()  # as `launch` does
    from PySide6.QtCore import qInstallMessageHandler
    from PySide6.QtWidgets import QApplication

    from app.ui.event_loop import WindowEventLoop
    from app.ui.gc_guard import GuiGarbageCollector
    from app.ui.main_window import MainWindow
    from app.ui.settings import AppSettings
    from app.ui.tile_scheme import register_scheme

    register_scheme()
    quiet = "does not support propagateSizeHints"  # the offscreen plugin says so for every dialog
    qInstallMessageHandler(lambda _kind, _context, text: quiet in text or print(text, file=sys.stderr))
    app = QApplication(sys.argv[:1])
    loop = WindowEventLoop(app)
    asyncio.set_event_loop(loop)
    window = MainWindow(AppSettings(port=0, token=token, tile_url=""), db)
    window.resize(1440, 900)
    window.show()
    return BenchWindow(app, loop, window, GuiGarbageCollector(app))
