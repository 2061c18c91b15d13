"""The message log: newest messages across devices, in a bounded window (older ones stay in SQLite)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtGui import QBrush, QColor

from app.core.display import position_text, speed_text, utc_text
from app.core.filters import FilterError, Predicate, compile_filter, looks_like_expression
from app.core.fleet import LogEntry
from app.core.fleet_frames import message_name, param_count
from app.core.normalize import flag_names
from app.ui.bounded_model import BoundedListModel

FLAGGED = QBrush(QColor("#fff3e0"))
RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)


def _name(entry: LogEntry) -> str:
    return message_name(entry.message)  # a logged message's without reading its parameters


class MessageLogModel(BoundedListModel[LogEntry]):
    """Rows are log entries, oldest first."""

    headers = ("#", "Received (UTC)", "Device time (UTC)", "Ident", "Name", "Position", "Speed", "Params", "Flags")

    def cell(self, entry: LogEntry, column: int, role: int) -> Any:
        m = entry.message
        if role == Qt.ItemDataRole.DisplayRole:
            if column == 0:
                return str(entry.seq)
            if column == 1:
                return utc_text(entry.received_at, millis=True)
            if column == 2:
                return utc_text(m.ts, millis=True)
            if column == 3:
                return m.ident
            if column == 4:
                return _name(entry)
            if column == 5:
                return position_text(m.lat, m.lon) if m.has_fix else "no fix"
            if column == 6:
                return speed_text(m.speed)
            if column == 7:
                return str(param_count(m))
            return ", ".join(flag_names(m.flags))
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (0, 6, 7):
            return RIGHT
        if role == Qt.ItemDataRole.BackgroundRole and m.flags:
            return FLAGGED
        return None


class LogFilterProxy(QSortFilterProxyModel):
    """Narrows the log to one device and/or a quick text filter over ident, name and flags."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.ident: str | None = None
        self.text = ""
        self.predicate: Predicate | None = None
        self.error = ""

    def set_ident(self, ident: str | None) -> None:
        """Show only this device's messages (None: every device)."""
        self.beginFilterChange()
        self.ident = ident
        self.endFilterChange()

    def set_text(self, text: str) -> None:
        """Words: rows whose ident, name or flags contain them. An expression (see
        app.core.filters): rows whose parameters match it; a bad one shows nothing and sets
        ``error``."""
        self.beginFilterChange()
        self.text, self.predicate, self.error = "", None, ""
        if looks_like_expression(text):
            try:
                self.predicate = compile_filter(text)
            except FilterError as exc:
                self.error = str(exc)
                self.predicate = lambda params: False
        else:
            self.text = text.strip().lower()
        self.endFilterChange()

    def filterAcceptsRow(self, row: int, parent: QModelIndex | QPersistentModelIndex) -> bool:
        if self.ident is None and self.predicate is None and not self.text:
            return True  # no filter: asked for every row a backlog appends, so answered first
        entry: LogEntry = self.sourceModel().items[row]  # type: ignore[attr-defined]
        m = entry.message
        if self.ident is not None and m.ident != self.ident:
            return False
        if self.predicate is not None:
            return self.predicate(m.params)
        if not self.text:
            return True
        return self.text in f"{m.ident} {_name(entry)} {' '.join(flag_names(m.flags))}".lower()
