"""The window's status bar, rendered from the same `StatusView` as the connection panel: the
link's health (coloured), where it listens, the rate, totals and the recording file."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QPushButton, QStatusBar, QWidget

from app.server.listener_state import ERROR, IDLE, OK, WARN, StatusView
from app.ui.connection_panel import restyle
from app.ui.eliding_label import ElidingLabel

STYLES = {OK: "color: #2e7d32; font-weight: 600;", IDLE: "color: #455a64;",
          WARN: "color: #b26a00; font-weight: 600;", ERROR: "color: #b71c1c; font-weight: 600;"}


class StatusLine(QWidget):
    """Owns the permanent labels of a QStatusBar (transient messages still use showMessage)."""

    flespi_requested = Signal()

    def __init__(self, bar: QStatusBar) -> None:
        super().__init__(bar)
        self.hide()  # a holder for signals only; the labels live in the bar
        self._bar = bar
        self._rendered: tuple = ()
        self.health = QLabel("")
        self.urls = QLabel("")
        self.lag = QLabel("")  # how far the live view is behind the recording, when it is
        self.lag.setStyleSheet(STYLES[WARN])
        self.lag.setToolTip("The recording has everything; the table, map and log show it as soon as it "
                            "is folded (a backlog arrived faster than the window can show it)")
        self.lag.hide()
        self.rate = QLabel("")
        # The totals and the file's name give way to the lag, which must be read whole.
        self.totals = ElidingLabel("", Qt.TextElideMode.ElideRight)
        self.file = ElidingLabel("")
        for label in (self.health, self.urls, self.lag, self.rate, self.totals, self.file):
            label.setTextFormat(Qt.TextFormat.PlainText)
        self.urls.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.flespi = QPushButton("flespi set-up…")
        self.flespi.setFlat(True)
        self.flespi.setToolTip("Nothing arrives: check the stream's URL and header in the flespi set-up")
        self.flespi.clicked.connect(self.flespi_requested)
        self.flespi.hide()
        bar.addWidget(self.health)
        bar.addWidget(self.flespi)
        bar.addWidget(self.urls, 1)
        bar.addPermanentWidget(self.lag)
        bar.addPermanentWidget(self.rate)
        bar.addPermanentWidget(self.totals)
        bar.addPermanentWidget(self.file)

    def show_lag(self, text: str) -> None:
        """How far the live view is behind the recording (`core.view_lag`); '' hides it."""
        if text != self.lag.text():
            self.lag.setText(text)
            self.lag.setVisible(bool(text))

    def render(self, view: StatusView, rate: float, file_tooltip: str) -> None:
        """Show ``view`` (and the live message rate); unchanged parts are left alone (a style
        sheet set again costs a re-polish)."""
        self.rate.setText(f"{rate:,.0f} msg/s")
        if (view, file_tooltip) == self._rendered:
            return
        self._rendered = (view, file_tooltip)
        self.health.setText("● " + view.heading)
        restyle(self.health, STYLES[view.level])
        self.health.setToolTip(view.detail)
        self._show_normal(self.flespi, view.suggest_flespi)
        self.urls.setText(view.listening)
        restyle(self.urls, STYLES[view.listening_level] if view.listening_level == ERROR else "")
        self.totals.setText(view.totals)
        self.file.setText(view.recording)
        restyle(self.file, STYLES[ERROR] if view.recording_level == ERROR else "")
        self.file.setToolTip(file_tooltip)

    def _show_normal(self, widget: QWidget, on: bool) -> None:
        """Show or hide one of the bar's normal (left) widgets. While a message is shown, Qt hides
        those and shows them again after: one shown now would be drawn over the message's text, so
        it is left for Qt to show then."""
        if on and self._bar.currentMessage():
            widget.hide()
            widget.setAttribute(Qt.WidgetAttribute.WA_WState_ExplicitShowHide, False)  # Qt's "hidden by the message"
        else:
            widget.setVisible(on)
