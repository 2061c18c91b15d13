"""'Set up flespi stream': the stream's body and a curl command; with a flespi token, creating
or patching the stream, subscribing it to the devices, channels and groups ticked, and a test
that flespi itself delivers to the URL. All flespi calls run on the loop (never blocking)."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlparse

import orjson
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from app.server.flespi_api import FlespiClient, FlespiError
from app.server.flespi_health import fetch_health
from app.server.flespi_stream import (
    KINDS,
    StreamSpec,
    curl_command,
    device_channels,
    duplicate_warning,
    find_stream,
    http_protocol_id,
    inject_into_device,
    inject_into_stream,
    probe_messages,
    set_up_stream,
    stream_body,
)
from app.ui.copy_feedback import copy_with_feedback

Runner = Callable[[Awaitable[Any]], Any]
#: Seconds the flespi test waits for its messages to reach the listener.
TEST_WAIT = 20.0
DEFAULT_LIMIT = 1000


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
    """Set-up of the flespi HTTP stream for a chosen URL; subscriptions; tests.

    ``local_test(url)`` posts a sample batch from this machine; ``arrival(marker, seconds)``
    waits for the listener to record a message with that ident; ``on_stream(token, api, id)``
    is told the stream once it is set up (the window watches its health)."""

    def __init__(self, urls: list[str], headers: dict[str, str], ca_pem: str | None, api: str, *,
                 local_test: Callable[[str], Awaitable[str]], arrival: Callable[[str, float], Awaitable[bool]],
                 run: Runner, on_stream: Callable[[str, str, int], None] | None = None, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Set up a flespi HTTP stream")
        self.resize(900, 0)
        self.headers, self.ca_pem = headers, ca_pem
        self._local_test, self._arrival, self._run, self._on_stream = local_test, arrival, run, on_stream
        self.protocol_id: int | None = None
        self.stream_id: int | None = None
        self.account: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
        self.channel_of: dict[int, int] = {}
        self.busy: asyncio.Task | None = None

        self.url = QComboBox(editable=True)
        self.url.addItems(urls)
        self.url.currentTextChanged.connect(self._refresh)
        self.name = QLineEdit("trackmon")
        self.name.textChanged.connect(self._name_changed)
        self.limit = QSpinBox(minimum=1, maximum=100_000, value=DEFAULT_LIMIT)
        self.limit.setToolTip("limit_messages: most messages in one POST")
        self.limit.valueChanged.connect(self._refresh)
        self.validate = QLineEdit(placeholderText="optional flespi expression, e.g. exists('position.latitude')")
        self.validate.setToolTip("validate_message: flespi sends only the messages matching this expression")
        self.validate.textChanged.connect(self._refresh)
        self.json = _text_box(130)
        self.curl = _text_box(80)
        copy_json = QPushButton("Copy JSON")
        copy_json.clicked.connect(lambda: copy_with_feedback(self.json.toPlainText(), copy_json, what="the JSON"))
        copy_curl = QPushButton("Copy curl")
        copy_curl.clicked.connect(lambda: copy_with_feedback(self.curl.toPlainText(), copy_curl, what="the command"))
        self.api = QLineEdit(api)
        self.api.textChanged.connect(self._refresh)
        self.token = QLineEdit(echoMode=QLineEdit.EchoMode.Password,
                               placeholderText="flespi token (kept in memory only, never saved)")
        self.load_button = QPushButton("Load devices, channels, groups")
        self.load_button.clicked.connect(lambda: self._start(self._load()))
        token_row = QHBoxLayout()
        token_row.addWidget(self.token, 1)
        token_row.addWidget(self.load_button)

        self.lists: dict[str, QListWidget] = {}
        pick = QGridLayout()
        for column, kind in enumerate(KINDS):
            pick.addWidget(QLabel(kind.capitalize()), 0, column)
            widget = QListWidget()
            widget.setMinimumHeight(110)
            widget.itemChanged.connect(self._choice_changed)
            pick.addWidget(widget, 1, column)
            self.lists[kind] = widget
        self.duplicates = QLabel("")
        self.duplicates.setTextFormat(Qt.TextFormat.PlainText)
        self.duplicates.setWordWrap(True)
        self.duplicates.setStyleSheet("color: #b26a00;")

        self.create_button = QPushButton("Create / update stream and subscribe")
        self.create_button.clicked.connect(lambda: self._start(self._create()))
        self.flespi_test_button = QPushButton("Test through flespi")
        self.flespi_test_button.setToolTip("flespi puts two test messages into the stream's queue and delivers "
                                           "them to the URI: proves flespi reaches this listener")
        self.flespi_test_button.clicked.connect(lambda: self._start(self._flespi_test()))
        self.test_route = QComboBox()
        self.test_route.setToolTip("Where flespi takes the test messages from: the stream's own queue, or a "
                                   "subscribed device (documented by flespi; the messages then stay in the "
                                   "device's history)")
        self.test_route.addItem("via the stream's queue", None)
        self.test_button = QPushButton("Send test batch (local only)")
        self.test_button.setToolTip("Posts a sample batch from this machine to the URL, as flespi would. It "
                                    "does not prove that flespi can reach the URL.")
        self.test_button.clicked.connect(lambda: self._start(self._report(self._local_test(self._uri()))))
        self.reach = QLabel("")
        self.reach.setWordWrap(True)
        self.reach.setStyleSheet("color: #b26a00;")
        self.result = QPlainTextEdit()
        self.result.setReadOnly(True)
        self.result.setFixedHeight(96)
        self.result.setPlaceholderText("What flespi answered shows here.")

        form = QFormLayout()
        form.addRow("Stream URI", self.url)
        form.addRow("", self.reach)
        form.addRow("Stream name", self.name)
        form.addRow("limit_messages", self.limit)
        form.addRow("validate_message", self.validate)
        form.addRow("Stream JSON", self.json)
        form.addRow("", copy_json)
        form.addRow("curl", self.curl)
        form.addRow("", copy_curl)
        form.addRow("flespi API", self.api)
        form.addRow("flespi token", token_row)
        buttons = QHBoxLayout()
        for button in (self.create_button, self.flespi_test_button, self.test_route, self.test_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        close = QPushButton("Close")
        close.clicked.connect(self.accept)
        buttons.addWidget(close)
        hint = QLabel("flespi must reach the URI from the internet: use a public address, a tunnel, or a port "
                      "forwarded on your router. The stream sends only what it is subscribed to: tick devices, "
                      "or channels (all their devices), or groups.")
        hint.setWordWrap(True)
        hint.setStyleSheet("color: #607d8b;")
        layout = QVBoxLayout(self)
        layout.addWidget(hint)
        layout.addLayout(form)
        layout.addWidget(QLabel("Subscribe the stream to (after loading them with the token):"))
        layout.addLayout(pick)
        layout.addWidget(self.duplicates)
        layout.addLayout(buttons)
        layout.addWidget(self.result)
        self._refresh()

    # -- what to send -----------------------------------------------------------------------
    def _uri(self) -> str:
        return self.url.currentText().strip()

    def spec(self) -> StreamSpec:
        """The stream trackmon asks for, from the current choices."""
        return StreamSpec(self.name.text().strip() or "trackmon", self._uri(), dict(self.headers),
                          limit_messages=self.limit.value(), ca_pem=self.ca_pem,
                          validate_message=self.validate.text().strip() or None)

    def body(self) -> dict[str, Any]:
        """The create body (``protocol_id`` once looked up with the token)."""
        return stream_body(self.spec(), self.protocol_id)

    def chosen(self) -> dict[str, list[str]]:
        """Ticked ids per kind, as selectors."""
        out: dict[str, list[str]] = {}
        for kind, widget in self.lists.items():
            ids = [str(widget.item(i).data(Qt.ItemDataRole.UserRole)) for i in range(widget.count())
                   if widget.item(i).checkState() == Qt.CheckState.Checked]
            if ids:
                out[kind] = ids
        return out

    def _refresh(self) -> None:
        self.reach.setText(reachability_warning(self._uri()))
        body = self.body()
        text = orjson.dumps(body, option=orjson.OPT_INDENT_2).decode()
        if self.protocol_id is None:
            text = text.replace('"name"', '"protocol_id": "<id of the http stream protocol: enter a token>",\n  '
                                '"name"', 1)
        self.json.setPlainText(text)
        self.curl.setPlainText(curl_command(self.spec(), self.protocol_id, self._api()))

    def _name_changed(self) -> None:
        self.stream_id = None  # another name is another stream: found again when needed
        self._refresh()

    def _api(self) -> str:
        return self.api.text().strip() or "https://flespi.io"

    def _choice_changed(self, _item: QListWidgetItem | None = None) -> None:
        chosen = self.chosen()
        devices = [{**d, "channel_id": self.channel_of.get(d["id"])} for d in self.account["devices"]
                   if str(d["id"]) in chosen.get("devices", [])]
        channels = [c for c in self.account["channels"] if str(c["id"]) in chosen.get("channels", [])]
        self.duplicates.setText(duplicate_warning(devices, channels))

    # -- talking to flespi ------------------------------------------------------------------
    def _start(self, job: Awaitable[Any]) -> None:
        self.busy = self._run(job)

    def _client(self) -> FlespiClient | None:
        token = self.token.text().strip()
        if not token:
            self.result.setPlainText("Enter a flespi token first.")
            return None
        return FlespiClient(token, self._api())

    async def _report(self, job: Awaitable[str]) -> None:
        self.result.setPlainText("Working…")
        self.result.setPlainText(await job)

    async def _load(self) -> None:
        client = self._client()
        if client is None:
            return
        self.result.setPlainText("Loading from flespi…")
        try:
            async with client:
                self.protocol_id = await http_protocol_id(client)
                for kind in KINDS:
                    fields = ("id", "name", "configuration") if kind == "devices" else ("id", "name")
                    self.account[kind] = [i for i in await client.items(kind, "all", fields)
                                          if isinstance(i.get("id"), int)]
                self.channel_of = await device_channels(client, [d["id"] for d in self.account["devices"]])
                existing, _ = await find_stream(client, self.spec().name, self.protocol_id)
        except (FlespiError, ValueError) as exc:
            self.result.setPlainText(f"Not loaded: {exc}")
            return
        note = ""
        if existing is not None:  # show what the stream has, so an update keeps it unless changed here
            self.stream_id = int(existing["id"])
            configuration = existing.get("configuration") if isinstance(existing.get("configuration"), dict) else {}
            if isinstance(configuration.get("limit_messages"), int):
                self.limit.setValue(configuration["limit_messages"])
            if isinstance(existing.get("validate_message"), str):
                self.validate.setText(existing["validate_message"])
            note = (f" Stream {self.stream_id} named {self.spec().name!r} exists: pressing Create / update patches "
                    "only its URI, headers, limit_messages, private CA and validate_message.")
        for kind, widget in self.lists.items():
            widget.blockSignals(True)
            widget.clear()
            for item in self.account[kind]:
                ident = (item.get("configuration") or {}).get("ident") if kind == "devices" else None
                label = f"{item.get('name') or '(no name)'} · {item['id']}" + (f" · {ident}" if ident else "")
                entry = QListWidgetItem(label)
                entry.setData(Qt.ItemDataRole.UserRole, item["id"])
                entry.setFlags(entry.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                entry.setCheckState(Qt.CheckState.Unchecked)
                widget.addItem(entry)
            widget.blockSignals(False)
        while self.test_route.count() > 1:
            self.test_route.removeItem(1)
        for device in self.account["devices"]:
            self.test_route.addItem(f"via device {device.get('name') or device['id']}", device["id"])
        self._refresh()
        counts = ", ".join(f"{len(self.account[k])} {k}" for k in KINDS)
        self.result.setPlainText(f"Loaded {counts}. Tick what the stream should send.{note}")

    async def _create(self) -> None:
        client = self._client()
        if client is None:
            return
        if not self._uri().startswith(("http://", "https://")):
            self.result.setPlainText("The stream URI must start with http:// or https://.")
            return
        self.result.setPlainText("Talking to flespi…")
        try:
            async with client:
                result = await set_up_stream(client, self.spec(), self.chosen())
                self.protocol_id = await http_protocol_id(client) if self.protocol_id is None else self.protocol_id
        except (FlespiError, ValueError) as exc:
            self.result.setPlainText(f"Not done: {exc}")
            return
        self.stream_id = result.stream_id
        lines = [line[0].upper() + line[1:] for line in result.lines()]
        if not result.subscribed:
            lines.append("Not subscribed to anything yet: flespi sends nothing until it is (tick devices, channels "
                         "or groups, then press again).")
        self.result.setPlainText("\n".join(lines))
        self._refresh()
        if self._on_stream is not None:
            self._on_stream(self.token.text().strip(), self._api(), result.stream_id)

    async def _flespi_test(self) -> None:
        client = self._client()
        if client is None:
            return
        self.result.setPlainText("Asking flespi to deliver two test messages…")
        try:
            async with client:
                if self.stream_id is None:
                    stream, _ = await find_stream(client, self.spec().name, await http_protocol_id(client))
                    if stream is None:
                        self.result.setPlainText("Create the stream first.")
                        return
                    self.stream_id = int(stream["id"])
                marker, messages = probe_messages()
                waiting = asyncio.ensure_future(self._arrival(marker, TEST_WAIT))
                try:
                    device = self.test_route.currentData()
                    if device is None:
                        await inject_into_stream(client, self.stream_id, messages)
                    else:  # reaches the stream only if it is subscribed to the device (or its channel, group)
                        await inject_into_device(client, int(device), messages)
                    self.result.setPlainText(f"flespi has the test messages ({marker}); waiting up to "
                                             f"{TEST_WAIT:.0f} s for them to arrive here…")
                    arrived = await waiting
                finally:
                    waiting.cancel()
                health = await fetch_health(client, self.stream_id)
        except (FlespiError, ValueError) as exc:
            self.result.setPlainText(f"Test not done: {exc}")
            return
        if arrived:
            text = f"flespi delivered the test to this listener: {marker} was received and recorded."
        else:
            text = f"The test did not arrive within {TEST_WAIT:.0f} s."
            if health.errors:
                text += f"\nflespi's stream log says: {health.errors[0].text}"
            else:
                text += "\nflespi's stream log shows no delivery error yet: check the URI and the tunnel."
        self.result.setPlainText(f"{text}\n{health.summary()}")
