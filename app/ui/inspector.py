"""The inspector: every parameter of one message, what changed since the device's previous
one, and the raw JSON one click away."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.display import utc_text, value_text
from app.core.fleet import LogEntry, changed_params
from app.core.normalize import Message, flag_names
from app.core.raw_json import indent_exact
from app.ui.copy_feedback import copy_with_feedback

CHANGE_COLORS = {"changed": QColor("#fff59d"), "added": QColor("#c8e6c9"), "removed": QColor("#ffcdd2")}
RawLoader = Callable[[LogEntry], Any]


class RawUnavailable(Exception):
    """A message's bytes as received could not be read (the recording file moved away, is not
    readable); the text says why."""


class RawJsonDialog(QDialog):
    """Shows JSON as plain text with a Copy button.

    With ``exact`` (a message's bytes as received), a tick switches between those bytes and the
    same bytes laid out one key per line, values still spelled exactly as sent."""

    def __init__(self, title: str, text: str, parent=None, *, exact: bytes | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.resize(560, 520)
        self.exact = exact
        self.text = QPlainTextEdit(text)
        self.text.setReadOnly(True)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        layout = QVBoxLayout(self)
        if exact is not None:
            self.note = QLabel(f"Exactly as received: {len(exact):,} bytes. Laid out adds line breaks "
                               "and indentation only; every value is spelled as sent.")
            self.note.setWordWrap(True)
            self.laid_out = QCheckBox("Laid out, one key per line")
            self.laid_out.setChecked(True)
            self.laid_out.toggled.connect(self._show_layout)
            layout.addWidget(self.note)
            layout.addWidget(self.laid_out)
            self._show_layout(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.copy = buttons.addButton("Copy", QDialogButtonBox.ButtonRole.ActionRole)
        self.copy.clicked.connect(lambda: copy_with_feedback(self.text.toPlainText(), self.copy))
        buttons.rejected.connect(self.reject)
        layout.addWidget(self.text)
        layout.addWidget(buttons)

    def _show_layout(self, laid_out: bool) -> None:
        assert self.exact is not None
        if laid_out:
            self.text.setPlainText(indent_exact(self.exact))
            self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        else:
            self.text.setPlainText(self.exact.decode("utf-8", errors="replace"))
            self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)


class Inspector(QWidget):
    """Parameter table for the message being inspected."""

    def __init__(self, raw_loader: RawLoader, parent=None) -> None:
        super().__init__(parent)
        self.raw_loader = raw_loader
        self.entry: LogEntry | None = None
        self.title = QLabel("Select a device or a message")
        self.title.setTextFormat(Qt.TextFormat.PlainText)
        self.title.setWordWrap(True)
        self.title.setStyleSheet("color: #37474f; padding: 2px 0;")
        self.search = QLineEdit(placeholderText="Search parameters…")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self._apply_search)
        self.changes_only = QCheckBox("Changes only")
        self.changes_only.setToolTip("Show only what changed since the device's previous message (old → new)")
        self.changes_only.toggled.connect(lambda _: self._apply_search(self.search.text()))
        self.changed_keys: set[str] = set()
        self.raw_button = QPushButton("Raw JSON")
        self.raw_button.setEnabled(False)
        self.raw_button.clicked.connect(self.show_raw)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["Parameter", "Value", "Previous"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setWordWrap(False)
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 6)  # compact rows
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.legend = QLabel("yellow: changed · green: new · red: gone since the previous message")
        self.legend.setStyleSheet("color: #607d8b; font-size: 11px;")
        top = QHBoxLayout()
        top.addWidget(self.search, 1)
        top.addWidget(self.changes_only)
        top.addWidget(self.raw_button)
        layout = QVBoxLayout(self)  # the tab names it: no heading, every line for parameters
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(3)
        layout.addWidget(self.title)
        layout.addLayout(top)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.legend)

    def show_entry(self, entry: LogEntry | None, previous: Message | None, label: str = "") -> None:
        """Inspect ``entry``, highlighting differences from ``previous`` (same device)."""
        self.entry = entry
        self.raw_button.setEnabled(entry is not None and entry.batch_id is not None)
        if entry is None:
            self.title.setText("Select a device or a message")
            self.table.setRowCount(0)
            return
        m = entry.message
        flags = ", ".join(flag_names(m.flags)) or "none"
        self.title.setText(f"{label or m.ident or '(no ident)'}\n"
                           f"device time {utc_text(m.ts, True)} UTC · received {utc_text(entry.received_at, True)}"
                           f" UTC · flags: {flags}")
        changes = changed_params(m, previous)
        self.changed_keys = set(changes)
        keys = sorted(set(m.params) | {k for k, v in changes.items() if v == "removed"})
        self.table.setUpdatesEnabled(False)
        self.table.setRowCount(len(keys))
        for row, key in enumerate(keys):
            change = changes.get(key)
            value = "" if change == "removed" else value_text(m.params[key])
            before = value_text(previous.params[key]) if previous and key in previous.params else ""
            items = [QTableWidgetItem(key), QTableWidgetItem(value),
                     QTableWidgetItem(before if change in ("changed", "removed") else "")]
            for column, item in enumerate(items):
                if change:
                    item.setBackground(QBrush(CHANGE_COLORS[change]))
                    item.setToolTip(change)
                self.table.setItem(row, column, item)
        self.table.setUpdatesEnabled(True)
        self._apply_search(self.search.text())

    def _apply_search(self, text: str) -> None:
        needle = text.strip().lower()
        only_changes = self.changes_only.isChecked()
        for row in range(self.table.rowCount()):
            key = self.table.item(row, 0).text()
            value = self.table.item(row, 1).text().lower()
            hidden = (bool(needle) and needle not in key.lower() and needle not in value) or (
                only_changes and key not in self.changed_keys)
            self.table.setRowHidden(row, hidden)

    def raw_bytes(self) -> bytes:
        """The inspected message byte for byte as the device sent it (a message not from a
        recorded batch has no bytes as received: its parameters are shown as JSON)."""
        if self.entry is None:
            return b""
        raw = self.raw_loader(self.entry)
        if isinstance(raw, bytes | bytearray):
            return bytes(raw)
        return orjson.dumps(raw, option=orjson.OPT_NON_STR_KEYS)

    def raw_text(self) -> str:
        """The inspected message as received, laid out one key per line."""
        return indent_exact(self.raw_bytes())

    def show_raw(self) -> None:
        """Open the raw JSON in a dialog with a Copy button."""
        if self.entry is not None:
            try:
                exact = self.raw_bytes()
            except RawUnavailable as exc:
                RawJsonDialog("Raw message JSON", f"Could not read this message from the recording: {exc}",
                              self).exec()
                return
            RawJsonDialog("Raw message JSON", "", self, exact=exact).exec()
