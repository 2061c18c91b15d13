"""'Import from flespi…': pick devices and a time range, pull their stored messages page by
page (progress, cancel) into a new session or into the live one. Network reads run on the loop,
writes in the recorder's thread: no worker thread of ours, nothing Qt leaves the GUI thread."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from PySide6.QtCore import QDateTime, Qt, QTimeZone
from PySide6.QtWidgets import (
    QButtonGroup,
    QDateTimeEdit,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
)

from app.server.flespi_api import FLESPI_TOKEN_ENV, FlespiClient, FlespiError
from app.server.flespi_pull import Device, PullProgress, PullSummary, pull
from app.store.faults import RecordingUnavailable
from app.store.recorder import BatchResult, Recorder

Runner = Callable[[Awaitable[Any]], asyncio.Task]


def _utc_edit(when: datetime) -> QDateTimeEdit:
    edit = QDateTimeEdit()
    edit.setTimeZone(QTimeZone.utc())
    edit.setDisplayFormat("yyyy-MM-dd HH:mm:ss 'UTC'")
    edit.setCalendarPopup(True)
    edit.setDateTime(QDateTime.fromSecsSinceEpoch(int(when.timestamp()), QTimeZone.utc()))
    return edit


class FlespiPullDialog(QDialog):
    """Pulls devices' history from flespi into the recording."""

    def __init__(self, recorder: Recorder, api: str, *, run: Runner,
                 on_batch: Callable[[BatchResult, float], None] | None = None, token: str = "", parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Import from flespi")
        self.resize(640, 0)
        self.recorder, self._run, self._on_batch = recorder, run, on_batch
        self.devices: list[Device] = []
        self.task: asyncio.Task | None = None
        self.summary: PullSummary | None = None

        self.api = QLineEdit(api)
        self.token = QLineEdit(token or os.environ.get(FLESPI_TOKEN_ENV, ""), echoMode=QLineEdit.EchoMode.Password,
                               placeholderText="flespi token (kept in memory only, never saved)")
        self.load_button = QPushButton("Load devices")
        self.load_button.clicked.connect(lambda: self._start(self._load()))
        token_row = QHBoxLayout()
        token_row.addWidget(self.token, 1)
        token_row.addWidget(self.load_button)
        self.list = QListWidget()
        self.list.setMinimumHeight(140)
        now = datetime.now(UTC).replace(microsecond=0)
        self.t_from = _utc_edit(now.replace(hour=0, minute=0, second=0))
        self.t_to = _utc_edit(now)
        self.new_session = QRadioButton("a new session")
        self.live_session = QRadioButton("the live session (fill a gap)")
        self.new_session.setChecked(True)
        target = QButtonGroup(self)
        target.addButton(self.new_session)
        target.addButton(self.live_session)
        target_row = QHBoxLayout()
        target_row.addWidget(self.new_session)
        target_row.addWidget(self.live_session)
        target_row.addStretch(1)
        self.session_name = QLineEdit("", placeholderText="session name (default: flespi + devices)")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.start_button = QPushButton("Import")
        self.start_button.clicked.connect(self.start_pull)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_pull)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        self.result = QLabel("")
        self.result.setTextFormat(Qt.TextFormat.PlainText)
        self.result.setWordWrap(True)

        form = QFormLayout()
        form.addRow("flespi API", self.api)
        form.addRow("flespi token", token_row)
        form.addRow("Devices", self.list)
        form.addRow("From", self.t_from)
        form.addRow("To", self.t_to)
        form.addRow("Into", target_row)
        form.addRow("Session name", self.session_name)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        buttons.addStretch(1)
        buttons.addWidget(close)
        hint = QLabel("Messages flespi stored for the devices are recorded like a stream's batches; any message "
                      "this recording already holds (delivered by the stream, pulled before) is stored once. "
                      "A new session is all or nothing: cancelled or failed, nothing is left.")
        hint.setWordWrap(True)
        hint.setStyleSheet("color: #607d8b;")
        layout = QVBoxLayout(self)
        layout.addWidget(hint)
        layout.addLayout(form)
        layout.addWidget(self.progress)
        layout.addLayout(buttons)
        layout.addWidget(self.result)

    def _start(self, job: Awaitable[Any]) -> asyncio.Task:
        self.task = self._run(job)
        return self.task

    def _client(self) -> FlespiClient | None:
        if not self.token.text().strip():
            self.result.setText("Enter a flespi token first.")
            return None
        return FlespiClient(self.token.text().strip(), self.api.text().strip() or "https://flespi.io")

    async def _load(self) -> None:
        client = self._client()
        if client is None:
            return
        self.result.setText("Loading devices…")
        try:
            async with client:
                items = await client.items("devices", "all", ("id", "name", "configuration"))
        except FlespiError as exc:
            self.result.setText(f"Not loaded: {exc}")
            return
        self.devices = [Device.from_item(i) for i in items if isinstance(i.get("id"), int)]
        self.list.clear()
        for device in self.devices:
            entry = QListWidgetItem(f"{device.name or '(no name)'} · {device.id} · {device.ident}")
            entry.setData(Qt.ItemDataRole.UserRole, device.id)
            entry.setFlags(entry.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            entry.setCheckState(Qt.CheckState.Unchecked)
            self.list.addItem(entry)
        self.result.setText(f"{len(self.devices)} devices. Tick the ones to import.")

    def chosen(self) -> list[Device]:
        """The ticked devices."""
        ticked = {self.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.list.count())
                  if self.list.item(i).checkState() == Qt.CheckState.Checked}
        return [d for d in self.devices if d.id in ticked]

    def start_pull(self) -> None:
        """Start the import with the current choices (on the loop)."""
        devices = self.chosen()
        t_from = self.t_from.dateTime().toSecsSinceEpoch()
        t_to = self.t_to.dateTime().toSecsSinceEpoch()
        if not devices:
            self.result.setText("Tick at least one device (load them with the token first).")
            return
        if t_to < t_from:
            self.result.setText("'To' is before 'From'.")
            return
        client = self._client()
        if client is None:
            return
        name = None
        if self.new_session.isChecked():
            name = self.session_name.text().strip() or "flespi " + ", ".join(d.name or str(d.id) for d in devices[:3])
        self._busy(True)
        self.progress.setValue(0)
        self.progress.setFormat("%p%")
        self.result.setText("Importing…")
        self._start(self._pull(client, devices, float(t_from), float(t_to), name))

    def cancel_pull(self) -> None:
        """Stop the import: a new session is removed; pages already in the live session stay."""
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def _busy(self, busy: bool) -> None:
        self.start_button.setEnabled(not busy)
        self.load_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    def _progress(self, progress: PullProgress) -> None:
        self.progress.setValue(int(progress.fraction * 1000))
        self.result.setText(f"Device {progress.device + 1} of {progress.devices}: {progress.messages:,} messages, "
                            f"up to {datetime.fromtimestamp(progress.reached, UTC):%Y-%m-%d %H:%M:%S} UTC")

    async def _pull(self, client: FlespiClient, devices: list[Device], t_from: float, t_to: float,
                    name: str | None) -> None:
        try:
            async with client:
                summary = await pull(client, self.recorder, devices, t_from, t_to, session_name=name,
                                     progress=self._progress, on_batch=self._on_batch)
        except asyncio.CancelledError:
            self.result.setText("Cancelled: no session was left behind." if name is not None else
                                "Cancelled: the pages already imported stay in the live session.")
            self.progress.setFormat("")
            return
        except (FlespiError, RecordingUnavailable, ValueError) as exc:
            self.result.setText(f"Not imported: {exc}" + (" (nothing was left behind)" if name is not None else ""))
            return
        finally:
            self._busy(False)
        self.progress.setValue(1000)
        self.result.setText(summary.text())
        self.summary = summary  # last: the import is over when this is set

    def closeEvent(self, event) -> None:
        self.cancel_pull()
        super().closeEvent(event)
