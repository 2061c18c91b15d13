"""The window's menu bar, built from the window's own actions (the toolbar's), with standard
shortcuts: File, View, Tools, Help (README, keyboard shortcuts, About with the version)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence
from PySide6.QtWidgets import QFileDialog, QMainWindow, QMenuBar, QMessageBox

import app
from app.ui.inspector import RawJsonDialog

README = Path(__file__).resolve().parents[2] / "README.md"


def _action(parent: QMainWindow, text: str, slot, shortcut: QKeySequence | QKeySequence.StandardKey | str | None = None,
            tip: str = "") -> QAction:
    action = QAction(text, parent, triggered=slot)
    if shortcut is not None:
        action.setShortcut(QKeySequence(shortcut))
    if tip:
        action.setStatusTip(tip)
    return action


def standard(key: QKeySequence.StandardKey, fallback: str) -> QKeySequence:
    """The platform's shortcut for ``key``, or ``fallback`` where the platform defines none (Qt
    documents StandardKey bindings per platform; e.g. Quit and Preferences are empty on some)."""
    sequence = QKeySequence(key)
    return sequence if not sequence.isEmpty() else QKeySequence(fallback)


def _shortcut_rows(menu_bar: QMenuBar) -> list[tuple[str, str, str]]:
    """(menu, action, shortcut) for every action that has a shortcut."""
    rows = []
    for menu_action in menu_bar.actions():
        menu = menu_action.menu()
        if menu is None:
            continue
        for action in menu.actions():
            key = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
            if key:
                rows.append((menu_action.text().replace("&", ""), action.text().replace("&", ""), key))
    return rows


def shortcuts_text(menu_bar: QMenuBar) -> str:
    """The keyboard shortcuts, one per line, as the Help menu lists them."""
    return "\n".join(f"{key:<14} {menu} › {name}" for menu, name, key in _shortcut_rows(menu_bar))


def about_text() -> str:
    """What the About box says: name, version, purpose."""
    return (f"trackmon {app.__version__}\n\nA desktop live-tracking monitor for flespi HTTP streams: every batch "
            "is recorded to SQLite before it is acknowledged; devices show live in a table and on a map, "
            "with health checks, replay, import and export (GPX, CSV, KML, GeoJSON).")


def build_menu_bar(window) -> QMenuBar:
    """Menus over ``window``'s actions (MainWindow); returns the bar, already set on the window.
    New actions (Open session…, Import…, Export…, Quit, Help) are made here and kept as
    ``window.menu_actions`` by name."""
    bar = window.menuBar()
    bar.clear()
    made: dict[str, QAction] = {}

    def current_export() -> None:
        window.open_export(window.recorder.session_id)

    def import_file() -> None:
        path, _ = QFileDialog.getOpenFileName(window, "Import track", "", "Tracks (*.gpx *.csv);;All files (*)")
        if path:  # the session browser runs the import and shows its summary
            window.open_sessions().import_path(Path(path))

    file_menu = bar.addMenu("&File")
    window.new_session_action.setShortcut(standard(QKeySequence.StandardKey.New, "Ctrl+N"))
    file_menu.addAction(window.new_session_action)
    made["open"] = _action(window, "&Open session…", window.open_sessions,
                           standard(QKeySequence.StandardKey.Open, "Ctrl+O"),
                           "Browse recorded sessions: replay, export, re-send, rename, delete")
    made["import"] = _action(window, "&Import GPX/CSV…", import_file, "Ctrl+I", "Import a track as a new session")
    made["export"] = _action(window, "&Export current session…", current_export, "Ctrl+E",
                             "Export the session being recorded (GPX, CSV, KML, GeoJSON)")
    made["quit"] = _action(window, "&Quit", window.close, standard(QKeySequence.StandardKey.Quit, "Ctrl+Q"))
    for key in ("open", "import", "export"):
        file_menu.addAction(made[key])
    file_menu.addSeparator()
    file_menu.addAction(made["quit"])

    view_menu = bar.addMenu("&View")
    window.connection_action.setShortcut(QKeySequence("Ctrl+L"))
    for action in (window.connection_action, window.fit_action, window.follow_action):
        view_menu.addAction(action)
    view_menu.addSeparator()
    for n, title in enumerate(("Messages", "Requests", "Charts")):
        made[f"tab-{n}"] = _action(window, f"{title} tab", lambda _=False, n=n: window.tabs.setCurrentIndex(n),
                                   f"Alt+{n + 1}")
        view_menu.addAction(made[f"tab-{n}"])

    tools_menu = bar.addMenu("&Tools")
    window.demo_action.setShortcut(QKeySequence("Ctrl+D"))
    window.settings_action.setShortcut(standard(QKeySequence.StandardKey.Preferences, "Ctrl+,"))
    for action in (window.demo_action, window.recording_action, None, window.tunnel_action, window.flespi_action,
                   None, window.settings_action):
        if action is None:
            tools_menu.addSeparator()
        else:
            tools_menu.addAction(action)

    help_menu = bar.addMenu("&Help")
    made["readme"] = _action(window, "&README", lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(README))),
                             standard(QKeySequence.StandardKey.HelpContents, "F1"))
    made["shortcuts"] = _action(window, "&Keyboard shortcuts", lambda: RawJsonDialog(
        "Keyboard shortcuts", shortcuts_text(bar), window).exec(), "Ctrl+/")
    made["about"] = _action(window, "&About trackmon", lambda: QMessageBox.about(window, "About trackmon",
                                                                                 about_text()))
    for key in ("readme", "shortcuts", "about"):
        help_menu.addAction(made[key])
    window.menu_actions = made
    return bar
