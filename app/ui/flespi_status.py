"""The flespi stream's health where the user looks: a section of the connection panel and a
label in the status bar. Polling (`server/flespi_health.HealthPoller`) runs on the loop, every
30 s, backing off after failures; this module only shows what it reports."""

from __future__ import annotations

import os
import time

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QStatusBar, QVBoxLayout, QWidget

from app.server.flespi_api import FLESPI_TOKEN_ENV
from app.server.flespi_health import HealthPoller, StreamHealth

COLOURS = {"ok": "#2e7d32", "warning": "#b26a00", "error": "#b71c1c", "unknown": "#607d8b"}


def _plain(text: str = "", style: str = "") -> QLabel:
    label = QLabel(text)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setWordWrap(True)
    label.setStyleSheet(style)
    return label


class FlespiStatusPanel(QFrame):
    """State, backlog and recent delivery errors of the stream, with 'Check now'."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("flespiStatus")
        self.setStyleSheet("#flespiStatus { border: 1px solid #cfd8dc; border-radius: 4px; background: #ffffff; }")
        self.title = _plain("flespi stream", "font-weight: 600; color: #263238;")
        self.state = _plain("")
        self.errors = _plain("", "color: #b71c1c;")
        self.errors.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.check = QPushButton("Check now")
        self.stop = QPushButton("Stop watching")
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.check)
        top.addWidget(self.stop)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.addLayout(top)
        layout.addWidget(self.state)
        layout.addWidget(self.errors)
        self.hide()


class FlespiStatus:
    """Watches one flespi stream and shows it in the connection panel and the status bar.

    The token lives in memory only: from the flespi dialog after a set-up, or from the
    FLESPI_TOKEN environment variable when the window starts."""

    def __init__(self, panel_host: QWidget, status_bar: QStatusBar) -> None:
        self.panel = FlespiStatusPanel()
        add_section = getattr(panel_host, "add_section", None)
        if add_section is not None:
            add_section(self.panel)
        self.label = _plain("")
        self.label.setWordWrap(False)
        self.label.hide()
        status_bar.addPermanentWidget(self.label)
        self.poller: HealthPoller | None = None
        self.last: StreamHealth | None = None
        self.panel.check.clicked.connect(self.check_now)
        self.panel.stop.clicked.connect(self.unwatch)

    def watch(self, token: str, api: str, stream: int | str) -> None:
        """Start (or restart) watching ``stream`` (an id, or the name of an http stream)."""
        if self.poller is not None:
            self.poller.cancel()
        self.poller = HealthPoller(token, api, stream, self._health, self._error)
        self.panel.title.setText(f"flespi stream {stream}")
        self.panel.state.setText("Asking flespi…")
        self.panel.errors.setText("")
        self.panel.show()
        self.label.show()
        self._show_label("flespi: checking…", "unknown")
        self.poller.start()

    def watch_from_environment(self, api: str, name: str = "trackmon") -> bool:
        """Watch the http stream called ``name`` when FLESPI_TOKEN is set; True if it is."""
        token = os.environ.get(FLESPI_TOKEN_ENV, "").strip()
        if token:
            self.watch(token, api, name)
        return bool(token)

    def check_now(self) -> None:
        if self.poller is not None:
            self.poller.poll_now()

    def unwatch(self) -> None:
        """Stop polling and hide the section and the label."""
        if self.poller is not None:
            self.poller.cancel()
            self.poller = None
        self.panel.hide()
        self.label.hide()

    async def stop(self) -> None:
        """Stop polling (the window is closing)."""
        poller, self.poller = self.poller, None
        if poller is not None:
            await poller.stop()

    def _show_label(self, text: str, level: str) -> None:
        self.label.setText(text if len(text) <= 90 else text[:89] + "…")
        self.label.setToolTip(text)
        self.label.setStyleSheet(f"color: {COLOURS[level]};")

    def _health(self, health: StreamHealth) -> None:
        self.last = health
        self.panel.title.setText(f"flespi stream {health.name!r} ({health.stream_id})")
        checked = time.strftime("%H:%M:%S", time.gmtime(health.checked_at))
        delivered = ("" if health.last_accepted is None else
                     f" · last delivery {time.strftime('%H:%M:%S', time.gmtime(health.last_accepted))} UTC")
        self.panel.state.setText(" · ".join(health.state_words()) + delivered + f" — checked {checked} UTC")
        self.panel.state.setStyleSheet(f"color: {COLOURS[health.level]};")
        groups = health.grouped_errors()
        if groups:
            lines = [f"{time.strftime('%H:%M:%S', time.gmtime(at))} UTC{f' ({n}×)' if n > 1 else ''}  "
                     f"{text if len(text) <= 160 else text[:159] + '…'}" for text, n, at in groups[:3]]
            heading = "Delivery errors" if health.level == "error" else "Earlier delivery errors"
            self.panel.errors.setText(f"{heading} in flespi's stream log:\n" + "\n".join(lines))
            self.panel.errors.setStyleSheet(f"color: {COLOURS['error' if health.level == 'error' else 'unknown']};")
        else:
            self.panel.errors.setText("No delivery errors in flespi's recent stream log.")
            self.panel.errors.setStyleSheet(f"color: {COLOURS['unknown']};")
        queue = "?" if health.queue_size is None else f"{health.queue_size:,}"
        text = {"ok": f"flespi: OK, queue {queue}", "warning": f"flespi: queue {queue}",
                "error": f"flespi: delivery failing — {health.errors[0].text if health.errors else ''}"}[health.level]
        if health.enabled is False:
            text = "flespi: stream DISABLED"
        self._show_label(text, health.level)

    def _error(self, text: str) -> None:
        wait = self.poller.next_wait() if self.poller is not None else 0
        self.panel.state.setText(f"Cannot check the stream: {text} (next try in {wait:.0f} s)")
        self.panel.state.setStyleSheet(f"color: {COLOURS['warning']};")
        self._show_label("flespi: cannot check the stream", "warning")
        self.label.setToolTip(text)
