"""Open the desktop window: environment checks, the qasync loop, CLI overrides of settings."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
from dataclasses import replace

log = logging.getLogger(__name__)


def has_display() -> bool:
    """Whether Qt has somewhere to draw (X11, Wayland, or an explicit platform plugin)."""
    if sys.platform != "linux" or os.environ.get("QT_QPA_PLATFORM"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def prepare_webengine() -> None:
    """QtWebEngine's sandbox refuses to run as root; switch it off there, and say so."""
    if hasattr(os, "geteuid") and os.geteuid() == 0 and not os.environ.get("QTWEBENGINE_DISABLE_SANDBOX"):
        os.environ["QTWEBENGINE_DISABLE_SANDBOX"] = "1"
        log.warning("running as root: QtWebEngine sandbox disabled (QTWEBENGINE_DISABLE_SANDBOX=1)")


def tune_gc() -> None:
    """Make full garbage collections rare: with tens of thousands of live messages in the log
    window, each full pass stalls the event loop for ~100 ms (measured in benchmarks/gui_backlog.py).
    Objects alive after start-up are frozen out of collection altogether."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def launch(args: argparse.Namespace) -> int:
    """Run the window until it is closed; returns the exit code."""
    from app.cli.common import CliError
    from app.cli.listen import listener_setup
    from app.paths import default_db

    if not has_display():
        raise CliError("no display found (DISPLAY/WAYLAND_DISPLAY unset); for headless recording use "
                       "`trackmon record`")
    prepare_webengine()
    logging.getLogger().setLevel(min(logging.getLogger().level, logging.INFO))

    import qasync
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from app.ui.main_window import MainWindow
    from app.ui.settings import load_settings
    from app.ui.tile_scheme import register_scheme

    register_scheme()

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName("trackmon")
    app.setApplicationName("trackmon")
    store = QSettings()
    settings = load_settings(store)
    overrides = {name: value for name, value in (("host", args.host), ("port", args.port), ("path", args.path))
                 if value is not None}
    if args.token:
        overrides.update(token=args.token, require_token=True)
    settings = replace(settings, **overrides)
    # Validate the effective listener options exactly as `record` does (token rules, TLS files).
    args.host, args.port, args.path = settings.host, settings.port, settings.path
    args.token = settings.auth_token
    _host, _port, config, ssl_context = listener_setup(args)
    auth_override = config.auth if args.auth_header else None

    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    window = MainWindow(settings, args.db or default_db(), store=store, auth_override=auth_override,
                        ssl_context=ssl_context)
    window.show()
    tune_gc()

    async def run() -> None:
        await window.start()
        await window.closed.wait()
        await window.shutdown()

    with loop:
        loop.run_until_complete(run())
    return 0
