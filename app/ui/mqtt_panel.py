"""The MQTT source in the window: a status-bar label, a dialog to set it up, and the controller
that runs `server.mqtt_source.MqttSource` on the window's loop (qasync: its callbacks arrive on
the GUI thread). Its batches reach the live fleet as the HTTP listener's do: recorded, then folded
by the recorder's deriver process (`store/live_fold`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.server.limits import Limits
from app.server.mqtt_source import MqttSource, MqttState
from app.ui.label_text import set_label
from app.ui.mqtt_settings import TOKEN_ENVS, MqttSettings, load_mqtt_settings, save_mqtt_settings

TROUBLE = "color: #b71c1c; font-weight: 600;"


class MqttStatusLabel(QLabel):
    """``MQTT: connected · 1,234 msgs`` in the status bar; red while it is not connected. A
    one-second timer keeps the "reconnecting in N s" countdown moving; the label is touched only
    when what it shows differs (see `label_text`)."""

    def __init__(self) -> None:
        super().__init__("")
        self.setTextFormat(Qt.TextFormat.PlainText)  # the reason may quote the broker
        self._state: MqttState | None = None
        self._messages = 0
        self._timer = QTimer(self, interval=1000, timeout=self._render)
        self.hide()

    def show_state(self, state: MqttState | None, messages: int = 0) -> None:
        """Show ``state`` (None hides the label: the source is off)."""
        self._state, self._messages = state, messages
        if state is None:
            self._timer.stop()
            self.hide()
            return
        if not self._timer.isActive():
            self._timer.start()
        self._render()
        self.show()

    def _render(self) -> None:
        state = self._state
        if state is None:
            return
        if state.phase == "connected":
            held = " · HOLDING" if state.detail else ""
            text = f"MQTT: connected · {self._messages:,} msgs{held}"
        elif state.phase == "reconnecting" and state.retry_at is not None:
            what = "token refused" if state.auth_failed else "disconnected"
            text = f"MQTT: {what} · retry in {max(0.0, state.retry_at - time.time()):.0f} s"
        else:
            text = f"MQTT: {state.phase}"
        trouble = state.phase == "reconnecting" or bool(state.detail)
        set_label(self, text, TROUBLE if trouble else "", state.text())


class MqttDialog(QDialog):
    """Set up the MQTT source (broker, topics, token, CA) and watch its state."""

    def __init__(self, settings: MqttSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("MQTT source")
        self.setMinimumWidth(560)
        self.result_settings: MqttSettings | None = None
        self.enabled = QCheckBox("Record what the broker publishes (no tunnel needed)")
        self.enabled.setChecked(settings.enabled)
        self.broker = QLineEdit(settings.broker)
        self.broker.setPlaceholderText("mqtts://mqtt.flespi.io")
        self.topics = QPlainTextEdit(settings.topics)
        self.topics.setPlaceholderText("flespi/message/gw/devices/+")
        self.topics.setFixedHeight(72)
        self.token = QLineEdit(settings.token)
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setPlaceholderText(f"flespi token (empty: {' or '.join(TOKEN_ENVS)} from the environment)")
        self.cafile = QLineEdit(settings.cafile)
        self.cafile.setPlaceholderText("the system's CAs")
        browse = QPushButton("Browse…", clicked=self._browse)
        ca_row = QHBoxLayout()
        ca_row.addWidget(self.cafile, 1)
        ca_row.addWidget(browse)
        self.client_id = QLineEdit(settings.client_id)
        self.client_id.setPlaceholderText("derived from this machine and the recording file")
        form = QFormLayout()
        form.addRow(self.enabled)
        form.addRow("Broker", self.broker)
        form.addRow("Topics (one per line)", self.topics)
        form.addRow("Token (MQTT username)", self.token)
        form.addRow("CA file (mqtts)", ca_row)
        form.addRow("Session (client id)", self.client_id)
        hint = QLabel("flespi: mqtts://mqtt.flespi.io with a flespi token; flespi/message/gw/devices/+ is every "
                      "device the token may see, flespi/message/gw/devices/ID one device. Messages are "
                      "acknowledged only once recorded, and the broker keeps them while trackmon is closed.")
        hint.setWordWrap(True)
        hint.setStyleSheet("color: #555;")
        self.state_label = QLabel("")
        self.state_label.setTextFormat(Qt.TextFormat.PlainText)
        self.state_label.setWordWrap(True)
        self.error = QLabel("")
        self.error.setTextFormat(Qt.TextFormat.PlainText)
        self.error.setWordWrap(True)
        self.error.setStyleSheet(TROUBLE)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._save)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(hint)
        layout.addWidget(self.state_label)
        layout.addWidget(self.error)
        layout.addWidget(buttons)

    def show_state(self, state: MqttState | None, stats: dict[str, Any] | None = None) -> None:
        if state is None:
            self.state_label.setText("State: off")
            return
        figures = (f"\n{stats['received']:,} received · {stats['messages']:,} recorded · {stats['rejects']:,} "
                   f"rejected · {stats['duplicates']:,} received again" if stats else "")
        self.state_label.setText(f"State: {state.text()}{figures}")

    def current(self) -> MqttSettings:
        return MqttSettings(enabled=self.enabled.isChecked(), broker=self.broker.text().strip(),
                            topics=self.topics.toPlainText(), token=self.token.text().strip(),
                            cafile=self.cafile.text().strip(), client_id=self.client_id.text().strip())

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "CA certificate", "", "PEM (*.pem *.crt);;All files (*)")
        if path:
            self.cafile.setText(path)

    def _save(self) -> None:
        settings = self.current()
        if settings.enabled:
            try:
                settings.config(Path("check"))
            except ValueError as exc:
                self.error.setText(str(exc))
                return
        self.result_settings = settings
        self.accept()


class MqttStatus:
    """What ``GET /status`` says of the MQTT source. Plain data, no Qt: the window's listener
    thread calls it (holding the controller, which owns widgets, would let that thread drop the
    last reference to them)."""

    def __init__(self) -> None:
        self.source: MqttSource | None = None
        self.error = ""

    def __call__(self) -> dict[str, Any]:
        source = self.source
        return {"state": "off", "detail": self.error} if source is None else source.status()


class MqttController:
    """Owns the running source (or none), its settings, and what shows its state."""

    def __init__(self, recorder, *, store: QSettings | None = None, limits: Limits | None = None) -> None:
        self.recorder = recorder
        self.store = store
        self.limits = limits or Limits()
        self.settings = load_mqtt_settings(store)
        self.label = MqttStatusLabel()
        self.public = MqttStatus()  # the source and why it is off, for the listener's /status
        self._task: asyncio.Task | None = None
        self._dialog: MqttDialog | None = None
        self._applying: asyncio.Future | None = None

    @property
    def source(self) -> MqttSource | None:
        return self.public.source

    @source.setter
    def source(self, source: MqttSource | None) -> None:
        self.public.source = source

    @property
    def error(self) -> str:
        return self.public.error

    @error.setter
    def error(self, text: str) -> None:
        self.public.error = text

    def status(self) -> dict[str, Any]:
        """For ``GET /status``: the source's state, or why it is off."""
        return self.public()

    async def start(self) -> None:
        """Start the source if it is enabled; a bad setting is shown, not raised."""
        await self.stop()
        self.error = ""
        if not self.settings.enabled:
            self.label.show_state(None)
            return
        try:
            config = self.settings.config(self.recorder.path)
        except ValueError as exc:
            self.error = f"MQTT not started: {exc}"
            self.label.show_state(None)
            set_label(self.label, self.error, TROUBLE, self.error)
            self.label.show()
            return
        source = self.source = MqttSource(self.recorder, config, limits=self.limits)
        source.on_state(self._changed)
        source.on_batch(lambda _event, _messages: self._changed(source.state))
        self._task = asyncio.ensure_future(source.run())
        self._changed(source.state)

    async def stop(self) -> None:
        """Stop the source (the batch being written is finished first)."""
        source, task = self.source, self._task
        self.source = self._task = None
        if source is not None:
            source.stop()
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 30)
        self.label.show_state(None)

    async def apply(self, settings: MqttSettings) -> None:
        """Save ``settings`` and restart the source with them."""
        self.settings = settings
        save_mqtt_settings(self.store, settings)
        await self.start()

    def open_dialog(self, parent: QWidget | None = None) -> MqttDialog:
        """The set-up dialog (non-modal); Save applies and restarts."""
        if self._dialog is not None:
            self._dialog.raise_()
            return self._dialog
        dialog = self._dialog = MqttDialog(replace(self.settings), parent)
        dialog.show_state(self.source.state if self.source else None, self.source.status() if self.source else None)
        dialog.finished.connect(self._dialog_closed)
        dialog.show()
        return dialog

    def _dialog_closed(self, _result: int) -> None:
        dialog, self._dialog = self._dialog, None
        if dialog is not None and dialog.result_settings is not None:
            self._applying = asyncio.ensure_future(self.apply(dialog.result_settings))
        if dialog is not None:
            dialog.deleteLater()

    def _changed(self, state: MqttState) -> None:
        source = self.source
        messages = source.stats.messages if source is not None else 0
        self.label.show_state(state, messages)
        if self._dialog is not None and source is not None:
            self._dialog.show_state(state, source.status())
