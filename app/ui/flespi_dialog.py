"""'Set up flespi stream': the exact stream configuration, a curl command, and doing it for you."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from urllib.parse import urlparse

import orjson
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from app.server.flespi_api import DEFAULT_LIMIT, curl_command, stream_config
from app.ui.copy_feedback import copy_with_feedback

Runner = Callable[[Awaitable[str]], None]


def _text_box(height: int) -> QPlainTextEdit:
    box = QPlainTextEdit()
    box.setReadOnly(True)
    box.setFixedHeight(height)
    box.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
    return box


def reachability_warning(url: str) -> str:
    """Why flespi (on the internet) may not reach ``url``, or '' when it looks public."""
    host = urlparse(url.strip()).hostname or ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "This address is only on this machine: flespi cannot reach it." if host == "localhost" else ""
    if address.is_loopback:
        return "This address is only on this machine: flespi cannot reach it. Start a tunnel, or use a public address."
    if address.is_private or address.is_link_local:
        return "A local-network address: flespi reaches it only if your router forwards the port to this machine."
    return ""


class FlespiDialog(QDialog):
    """Shows what to configure in flespi for a chosen URL; can create the stream and test the path."""

    def __init__(self, urls: list[str], headers: dict[str, str], ca_pem: str | None, api: str,
                 create: Callable[[str, dict, str], Awaitable[str]], test: Callable[[str], Awaitable[str]],
                 run: Runner, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Set up a flespi HTTP stream")
        self.resize(720, 0)
        self.headers, self.ca_pem, self._create, self._test, self._run = headers, ca_pem, create, test, run
        self.url = QComboBox(editable=True)
        self.url.addItems(urls)
        self.url.currentTextChanged.connect(self._refresh)
        self.name = QLineEdit("trackmon")
        self.name.textChanged.connect(self._refresh)
        self.limit = QSpinBox(minimum=1, maximum=100_000, value=DEFAULT_LIMIT)
        self.limit.valueChanged.connect(self._refresh)
        self.json = _text_box(150)
        self.curl = _text_box(90)
        copy_json = QPushButton("Copy JSON")
        copy_json.clicked.connect(lambda: copy_with_feedback(self.json.toPlainText(), copy_json, what="the JSON"))
        copy_curl = QPushButton("Copy curl")
        copy_curl.clicked.connect(lambda: copy_with_feedback(self.curl.toPlainText(), copy_curl, what="the command"))
        self.api = QLineEdit(api)
        self.token = QLineEdit(echoMode=QLineEdit.EchoMode.Password, placeholderText="flespi token (not stored)")
        self.create_button = QPushButton("Create / update stream in flespi")
        self.create_button.clicked.connect(self._create_clicked)
        self.test_button = QPushButton("Send test batch")
        self.test_button.setToolTip("Posts a sample batch to the chosen URL, as flespi would")
        self.test_button.clicked.connect(self._test_clicked)
        self.reach = QLabel("")
        self.reach.setWordWrap(True)
        self.reach.setStyleSheet("color: #b26a00;")
        self.result = QLabel("")
        self.result.setTextFormat(Qt.TextFormat.PlainText)
        self.result.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Stream URI", self.url)
        form.addRow("", self.reach)
        form.addRow("Stream name", self.name)
        form.addRow("limit_messages", self.limit)
        form.addRow("Configuration", self.json)
        form.addRow("", copy_json)
        form.addRow("curl", self.curl)
        form.addRow("", copy_curl)
        form.addRow("flespi API", self.api)
        form.addRow("flespi token", self.token)
        buttons = QHBoxLayout()
        buttons.addWidget(self.create_button)
        buttons.addWidget(self.test_button)
        buttons.addStretch(1)
        close = QPushButton("Close")
        close.clicked.connect(self.accept)
        buttons.addWidget(close)
        hint = QLabel("flespi must reach the URI from the internet: use a public address, a tunnel, or a "
                      "port forwarded on your router. Then subscribe the stream to your devices or channels.")
        hint.setWordWrap(True)
        hint.setStyleSheet("color: #607d8b;")
        layout = QVBoxLayout(self)
        layout.addWidget(hint)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.result)
        self._refresh()

    def config(self) -> dict:
        """The stream configuration for the current choices."""
        return stream_config(self.name.text().strip() or "trackmon", self.url.currentText().strip(), self.headers,
                             limit_messages=self.limit.value(), ca_pem=self.ca_pem)

    def _refresh(self) -> None:
        self.reach.setText(reachability_warning(self.url.currentText()))
        config = self.config()
        self.json.setPlainText(orjson.dumps(config, option=orjson.OPT_INDENT_2).decode())
        self.curl.setPlainText(curl_command(config, self.api.text().strip() or "https://flespi.io"))

    def _create_clicked(self) -> None:
        if not self.token.text().strip():
            self.result.setText("Enter a flespi token first.")
            return
        self.result.setText("Talking to flespi…")
        self._run(self._report(self._create(self.token.text().strip(), self.config(), self.api.text().strip())))

    def _test_clicked(self) -> None:
        self.result.setText(f"Sending a test batch to {self.url.currentText()}…")
        self._run(self._report(self._test(self.url.currentText().strip())))

    async def _report(self, job: Awaitable[str]) -> None:
        self.result.setText(await job)
