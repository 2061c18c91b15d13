"""The empty state: exactly how to point a flespi HTTP stream at this window, or start a demo."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget


def _plain(text: str, style: str = "") -> QLabel:
    label = QLabel(text)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setWordWrap(True)
    if style:
        label.setStyleSheet(style)
    return label


class ConnectionPanel(QWidget):
    """URLs and header to paste into flespi, with copy buttons; demo feed; listener errors."""

    demo_requested = Signal()
    change_port_requested = Signal()
    tunnel_requested = Signal()
    flespi_requested = Signal()
    export_certificate_requested = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("connectionPanel")
        self.setStyleSheet("#connectionPanel { background: #fafbfc; }")
        self.error = _plain("", "color: #b71c1c; font-weight: 600;")
        self.change_port = QPushButton("Choose another port…")
        self.change_port.clicked.connect(self.change_port_requested)
        self.error_box = QFrame()
        error_layout = QVBoxLayout(self.error_box)
        error_layout.setContentsMargins(0, 0, 0, 0)
        error_layout.addWidget(self.error)
        error_layout.addWidget(self.change_port, 0, Qt.AlignmentFlag.AlignLeft)
        self.error_box.hide()
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
        flespi = QPushButton("Set up flespi stream…")
        flespi.clicked.connect(self.flespi_requested)
        reach_row = QHBoxLayout()
        reach_row.addWidget(tunnel)
        reach_row.addWidget(flespi)
        reach_row.addStretch(1)
        self.demo = QPushButton("▶  Start demo feed")
        self.demo.setStyleSheet("padding: 6px 14px; font-weight: 600;")
        self.demo.clicked.connect(self.demo_requested)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 16, 16, 16)
        layout.setSpacing(8)
        layout.addWidget(_plain("Waiting for data", "font-size: 17px; font-weight: 700; color: #263238;"))
        layout.addWidget(_plain("Point a flespi HTTP stream here: in flespi, create a stream with "
                                "protocol http and paste one of these URLs as its URI.", "color: #455a64;"))
        layout.addWidget(self.error_box)
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

    def _copy_row(self, box: QVBoxLayout, text: str) -> None:
        row = QHBoxLayout()
        field = QLineEdit(text)
        field.setReadOnly(True)
        field.setCursorPosition(0)
        copy = QPushButton("Copy")
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(text))
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

    def show_listener(self, urls: list[str], header: str | None, error: str = "", *,
                      https_fingerprint: str | None = None) -> None:
        """Show where the listener is reachable (public URL first), or why it is not."""
        self._clear(self.urls_box)
        self._clear(self.header_box)
        self.error.setText(error)
        self.error_box.setVisible(bool(error))
        for url in urls:
            self._copy_row(self.urls_box, url)
        self.https_box.setVisible(https_fingerprint is not None)
        if https_fingerprint:
            self.https.setText(f"HTTPS certificate SHA-256 {https_fingerprint}")
        if header:
            self._copy_row(self.header_box, header)
        else:
            self.header_box.addWidget(_plain("(none: token disabled in Settings)", "color: #78909c;"))

    def add_section(self, widget: QWidget) -> None:
        """Show ``widget`` under the tunnel and flespi buttons."""
        self.sections.addWidget(widget)

    def set_demo_running(self, running: bool) -> None:
        """Reflect the demo feed's state on its button."""
        self.demo.setText("■  Stop demo feed" if running else "▶  Start demo feed")
