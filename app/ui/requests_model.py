"""The requests panel: every POST, accepted or refused, newest last."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor

from app.core.display import utc_text
from app.server.listener import RequestEvent
from app.ui.bounded_model import BoundedListModel
from app.ui.text import plain_tooltip

REFUSED = QBrush(QColor("#ffebee"))
REFUSED_TEXT = QBrush(QColor("#b71c1c"))
RETRY = QBrush(QColor("#fffde7"))


#: A typical value per column, for sizing (app/ui/table_layout.fit_columns).
REQUEST_SAMPLES = ("2026-01-01 00:00:00.000", "255.255.255.255", "/flespi/path", "200", "10,000", "1,234,567",
                   "1234.5", None)


def note(e: RequestEvent) -> str:
    """The Note column: the reason, and for a refusal repeated in a burst how many times it came."""
    if e.repeats > 1:
        return f"×{e.repeats} {e.reason}"
    return e.reason


class RequestsModel(BoundedListModel[RequestEvent]):
    """The most recent request events; refused ones in red, re-sent ones in yellow."""

    headers = ("Time (UTC)", "Peer", "Path", "Status", "Messages", "Bytes", "ms", "Note")

    def cell(self, e: RequestEvent, column: int, role: int) -> Any:
        if role == Qt.ItemDataRole.DisplayRole:
            return (utc_text(e.received_at, millis=True), e.peer, e.path, str(e.status), str(e.count),
                    f"{e.wire_bytes:,}", f"{e.process_ms:.1f}", note(e))[column]
        if role == Qt.ItemDataRole.BackgroundRole:
            if e.status != 200:
                return REFUSED
            if e.duplicate:
                return RETRY
        if role == Qt.ItemDataRole.ForegroundRole and e.status != 200:
            return REFUSED_TEXT
        if role == Qt.ItemDataRole.ToolTipRole and e.reason:
            return plain_tooltip(e.reason)
        return None
