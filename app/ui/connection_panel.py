"""The connection panel: is data arriving, from where, is it healthy — and exactly how to point a
flespi HTTP stream at this window (or start a demo).

It renders a `StatusView` (app/server/listener_state.py), the same one the status bar renders, so
the two never disagree. Extra status lines (e.g. a flespi stream's health) go in with
`add_status_line`.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from app.server.listener_state import ERROR, IDLE, OK, WARN, StatusView
from app.ui.copy_feedback import copy_with_feedback

LEVEL_COLORS = {OK: "#2e7d32", IDLE: "#263238", WARN: "#b26a00", ERROR: "#b71c1c"}


def restyle(widget: QWidget, style: str) -> None:
    """Set a style sheet only when it changes: setting one re-polishes the widget, and the panel
    is rendered on every frame."""
    if widget.styleSheet() != style:
        widget.setStyleSheet(style)


def _plain(text: str, style: str = "") -> QLabel:
    label = QLabel(text)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setWordWrap(True)
    if style:
        label.setStyleSheet(style)
    return label


class ConnectionPanel(QWidget):
    """State of the link, URLs and header to paste into flespi (with copy buttons), demo feed."""

    demo_requested = Signal()
    change_port_requested = Signal()
    tunnel_requested = Signal()
    flespi_requested = Signal()
    export_certificate_requested = Signal()
    copied = Signal(str)  # "Copied the URL to the clipboard": for the status bar

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("connectionPanel")
        self.setStyleSheet("#connectionPanel { background: #fafbfc; }")
        self.heading = _plain("Waiting for data", "font-size: 17px; font-weight: 700; color: #263238;")
        self.detail = _plain("", "color: #37474f;")
        self.status_lines = QVBoxLayout()  # more lines about the link (add_status_line)
        self.status_lines.setContentsMargins(0, 0, 0, 0)
        self.change_port = QPushButton("Choose another port…")
        self.change_port.clicked.connect(self.change_port_requested)
        self.error_box = QFrame()  # shown while nothing listens because of a problem
        error_layout = QVBoxLayout(self.error_box)
        error_layout.setContentsMargins(0, 0, 0, 0)
        error_layout.addWidget(self.change_port, 0, Qt.AlignmentFlag.AlignLeft)
        self.error_box.hide()
        self.urls_intro = _plain("Point a flespi HTTP stream here: in flespi, create a stream with protocol http "
                                 "and paste one of these URLs as its URI.", "color: #455a64; margin-top: 6px;")
        self.urls_box = QVBoxLayout()
        self.header_box = QVBoxLayout()
        self.https = _plain("", "color: #2e7d32;")
        self.export_cert = QPushButton("Export certificate…")
        self.export_cert.setToolTip("Save the certificate to give flespi as the stream's private CA")
        self.export_cert.clicked.connect(self.export_certificate_requested)
        https_row = QHBoxLayout()
        https_row.addWidget(self.https, 1)
        https_row.addWidget(self.export_cert)
        self.https_box = QFrame()
        self.https_box.setLayout(https_row)
        self.https_box.hide()
        tunnel = QPushButton("Tunnel…")
        tunnel.setToolTip("Reach this listener from the internet through SSH, cloudflared or ngrok")
        tunnel.clicked.connect(self.tunnel_requested)
        self.flespi = QPushButton("Set up flespi stream…")
        self.flespi.clicked.connect(self.flespi_requested)
        reach_row = QHBoxLayout()
        reach_row.addWidget(tunnel)
        reach_row.addWidget(self.flespi)
        reach_row.addStretch(1)
        self.demo = QPushButton("▶  Start demo feed")
        self.demo.setStyleSheet("padding: 6px 14px; font-weight: 600;")
        self.demo.clicked.connect(self.demo_requested)
        self._shown: tuple = ()  # (urls, header): rows are rebuilt only when these change
        self._rendered: tuple = ()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 16, 16, 16)
        layout.setSpacing(8)
        layout.addWidget(self.heading)
        layout.addWidget(self.detail)
        layout.addLayout(self.status_lines)
        layout.addWidget(self.error_box)
        layout.addWidget(self.urls_intro)
        layout.addLayout(self.urls_box)
        layout.addWidget(self.https_box)
        layout.addLayout(reach_row)
        self.sections = QVBoxLayout()  # e.g. the flespi stream's health (ui/flespi_status.py)
        layout.addLayout(self.sections)
        layout.addWidget(_plain("Add this header to the stream's headers:", "color: #455a64; margin-top: 6px;"))
        layout.addLayout(self.header_box)
        layout.addWidget(_plain("The stream's limit_messages can stay at its default; every batch is "
                                "recorded before it is acknowledged.", "color: #78909c;"))
        layout.addSpacing(10)
        layout.addWidget(_plain("No tracker at hand? Simulate a fleet sent exactly like a flespi stream:",
                                "color: #455a64;"))
        layout.addWidget(self.demo, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addStretch(1)

    def add_status_line(self, widget: QWidget) -> None:
        """Another line under the heading (e.g. the flespi stream's own health)."""
        self.status_lines.addWidget(widget)

    def _copy_row(self, box: QVBoxLayout, text: str, what: str) -> None:
        row = QHBoxLayout()
        field = QLineEdit(text)
        field.setReadOnly(True)
        field.setCursorPosition(0)
        copy = QPushButton("Copy")
        copy.setToolTip(f"Copy the {what} to the clipboard")
        copy.clicked.connect(lambda: copy_with_feedback(text, copy, self.copied.emit, f"the {what}"))
        row.addWidget(field, 1)
        row.addWidget(copy)
        box.addLayout(row)

    @staticmethod
    def _clear(box: QVBoxLayout) -> None:
        while box.count():
            item = box.takeAt(0)
            layout = item.layout()
            if layout is not None:
                while layout.count():
                    child = layout.takeAt(0).widget()
                    if child is not None:
                        child.deleteLater()
            elif item.widget() is not None:
                item.widget().deleteLater()

    def show_state(self, view: StatusView, header: str | None, *, https_fingerprint: str | None = None) -> None:
        """Render the listener's state: heading, what to do, and URLs only where something listens."""
        if (view, header, https_fingerprint) == self._rendered:
            return  # unchanged: no style or layout work (this runs every frame)
        self._rendered = (view, header, https_fingerprint)
        self.heading.setText(view.heading)
        restyle(self.heading, f"font-size: 17px; font-weight: 700; color: {LEVEL_COLORS[view.level]};")
        self.detail.setText(view.detail)
        self.error_box.setVisible(not view.urls and view.listening_level == ERROR)
        restyle(self.flespi, "font-weight: 700; color: #b26a00;" if view.suggest_flespi else "")
        self.urls_intro.setVisible(bool(view.urls))
        self.https_box.setVisible(https_fingerprint is not None and bool(view.urls))
        if https_fingerprint:
            self.https.setText(f"HTTPS certificate SHA-256 {https_fingerprint}")
        if self._shown == (view.urls, header):
            return
        self._shown = (view.urls, header)
        self._clear(self.urls_box)
        self._clear(self.header_box)
        for url in view.urls:
            self._copy_row(self.urls_box, url, "URL")
        if header:
            self._copy_row(self.header_box, header, "header")
        else:
            self.header_box.addWidget(_plain("(none: token disabled in Settings)", "color: #78909c;"))

    def add_section(self, widget: QWidget) -> None:
        """Show ``widget`` under the tunnel and flespi buttons."""
        self.sections.addWidget(widget)
    def copy_buttons(self) -> list[QPushButton]:
        """The Copy buttons shown now (URLs first, then the header)."""
        buttons = []
        for box in (self.urls_box, self.header_box):
            for i in range(box.count()):
                row = box.itemAt(i).layout()
                if row is not None:
                    buttons.append(row.itemAt(1).widget())
        return buttons

    def set_demo_running(self, running: bool) -> None:
        """Reflect the demo feed's state on its button."""
        self.demo.setText("■  Stop demo feed" if running else "▶  Start demo feed")

