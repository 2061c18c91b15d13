"""Open the desktop window: environment checks, the qasync loop, CLI overrides of settings."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def has_display() -> bool:
    """Whether Qt has somewhere to draw (X11, Wayland, or an explicit platform plugin)."""
    if sys.platform != "linux" or os.environ.get("QT_QPA_PLATFORM"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def debian_package(soname: str) -> str:
    """The Debian package that ships a library: libxcb-icccm.so.4 → libxcb-icccm4,
    libxkbcommon-x11.so.0 → libxkbcommon-x11-0."""
    name, _, version = soname.partition(".so.")
    return f"{name}{'-' if name[-1:].isdigit() else ''}{version}" if version else name


def missing_x11_packages() -> list[str]:
    """Debian packages Qt's X11 (xcb) plugin needs but this machine lacks; [] when there is
    nothing to check (not Linux/X11, no ldd). Without them Qt aborts with a message that names
    libxcb-cursor0 whatever is actually missing."""
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if sys.platform != "linux" or platform not in ("", "xcb") or not shutil.which("ldd"):
        return []
    from PySide6.QtCore import QLibraryInfo
    plugin = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms" / "libqxcb.so"
    if not plugin.exists():
        return []
    found = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True, check=False).stdout
    missing = {line.split()[0] for line in found.splitlines() if "not found" in line}
    return sorted(debian_package(soname) for soname in missing)


def prepare_webengine() -> None:
    """QtWebEngine's sandbox refuses to run as root; switch it off there, and say so."""
    if hasattr(os, "geteuid") and os.geteuid() == 0 and not os.environ.get("QTWEBENGINE_DISABLE_SANDBOX"):
        os.environ["QTWEBENGINE_DISABLE_SANDBOX"] = "1"
        log.warning("running as root: QtWebEngine sandbox disabled (QTWEBENGINE_DISABLE_SANDBOX=1)")


class LaunchError(RuntimeError):
    """The window cannot open here; the message says why and what to do instead."""


#: Validates the effective listener options (after settings and command-line overrides) into
#: (host, port, ListenerConfig, ssl_context), raising the caller's own error for bad options.
ListenerSetup = Callable[[argparse.Namespace], tuple[str, int, Any, Any]]


def launch(args: argparse.Namespace, listener_setup: ListenerSetup) -> int:
    """Run the window until it is closed; returns the exit code. ``listener_setup`` is the
    command line's own validation, so the window and `trackmon record` refuse the same options."""
    from app.paths import default_db
    from app.ui.malloc_arenas import limit_malloc_arenas

    if not has_display():
        raise LaunchError("no display found (DISPLAY/WAYLAND_DISPLAY unset); for headless recording use "
                       "`trackmon record`")
    if os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        missing = missing_x11_packages()
        if missing:
            raise LaunchError(f"the window needs system libraries Qt's X11 plugin cannot find; Debian/Ubuntu: "
                           f"sudo apt-get install {' '.join(missing)} (headless recording: `trackmon record`)")
    prepare_webengine()
    limit_malloc_arenas()  # before Qt's and our threads start (see app/ui/malloc_arenas.py)
    logging.getLogger().setLevel(min(logging.getLogger().level, logging.INFO))

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from app.ui.event_loop import WindowEventLoop
    from app.ui.gc_guard import GuiGarbageCollector
    from app.ui.main_window import MainWindow
    from app.ui.rendering import choose_rendering
    from app.ui.settings import RunOverrides, load_settings
    from app.ui.tile_scheme import register_scheme

    register_scheme()

    app = QApplication.instance() or QApplication(sys.argv[:1])
    choose_rendering()  # no GPU: draw the map in software, not through emulated OpenGL (ui/rendering)
    app.setOrganizationName("trackmon")
    app.setApplicationName("trackmon")
    store = QSettings()
    settings = load_settings(store)
    overrides = {name: value for name, value in (("host", args.host), ("port", args.port), ("path", args.path))
                 if value is not None}
    if args.token:
        overrides.update(token=args.token, require_token=True)
    settings, run_overrides = RunOverrides.over(settings, overrides)  # for this run: never saved
    # Validate the effective listener options exactly as `record` does (token rules, TLS files).
    args.host, args.port, args.path = settings.host, settings.port, settings.path
    args.token = settings.auth_token
    _host, _port, config, ssl_context = listener_setup(args)
    auth_override = config.auth if args.auth_header else None

    loop = WindowEventLoop(app)
    asyncio.set_event_loop(loop)
    window = MainWindow(settings, args.db or default_db(), store=store, auth_override=auth_override,
                        ssl_context=ssl_context, overrides=run_overrides)
    window.show()
    # Cyclic garbage collection only on this thread, from now on (see app/ui/gc_guard.py).
    collector = GuiGarbageCollector(app)

    async def run() -> None:
        await window.start()
        await window.closed.wait()
        await window.shutdown()

    with loop:
        loop.run_until_complete(run())
    collector.stop()
    return 0
