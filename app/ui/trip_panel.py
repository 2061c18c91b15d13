"""Trip figures per device for the replayed range."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QHeaderView, QLabel, QTableView, QVBoxLayout, QWidget

from app.core.display import age_text
from app.core.trips import TripStats
from app.ui.bounded_model import BoundedListModel
from app.ui.table_layout import fit_columns, readable

HEADERS = ("Device", "Distance", "Moving", "Stopped", "Max speed", "Avg speed", "Stops")
RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)


def duration_text(seconds: float) -> str:
    """'1 h 05 min', '12 min', '40 s'."""
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    return age_text(seconds)


class TripTableModel(BoundedListModel[tuple[str, ...]]):
    """One row of trip figures per device, replaced whole at each refresh: one change signal
    for the table, never one per cell (with a cell-by-cell `QTableWidget`, 500 devices took the
    GUI thread 30–40 s a refresh, once a second)."""

    headers = HEADERS

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(capacity=1 << 30, parent=parent)  # one row per device: never trimmed

    def cell(self, item: tuple[str, ...], column: int, role: int) -> Any:
        if role == Qt.ItemDataRole.DisplayRole:
            return item[column]  # plain text: names are untrusted
        if role == Qt.ItemDataRole.TextAlignmentRole and column:
            return RIGHT
        return None

    def set_rows(self, rows: list[tuple[str, ...]]) -> None:
        """Show ``rows``: the same devices in the same order change in place, others reset."""
        if [r[0] for r in rows] == [r[0] for r in self.items] and rows:
            self.items = rows
            self.dataChanged.emit(self.index(0, 0), self.index(len(rows) - 1, len(HEADERS) - 1))
        else:
            self.beginResetModel()
            self.items = rows
            self.endResetModel()


class TripPanel(QWidget):
    """A table of trip figures, refreshed by the window once a second during replay."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.hint = QLabel("Trip figures cover the range replayed since the last seek. "
                           "Stops: ignition off or no movement for 2 min or more.")
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color: #607d8b;")
        self.model = TripTableModel(self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)  # ResizeToContents measures every row
        header.setStretchLastSection(True)
        readable(self.table)  # long names elided in the middle, whole in a tooltip
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 6)  # compact rows
        fit_columns(self.table, ["Ambulance 007", "123.45 km", "1 h 05 min", "1 h 05 min", "120 km/h", "120 km/h",
                                 None])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.hint)
        layout.addWidget(self.table)

    def show_trips(self, trips: dict[str, TripStats], names: dict[str, str]) -> None:
        """Show one row per device (sorted by name, then ident)."""
        idents = sorted(trips, key=lambda i: (names.get(i) or i).lower())
        rows = []
        for ident in idents:
            t = trips[ident]
            stops = len(t.stops) + (1 if t.open_stop() else 0)
            rows.append((names.get(ident) or ident, f"{t.distance_m / 1000:.2f} km", duration_text(t.moving_s),
                         duration_text(t.stopped_s), f"{t.max_speed_kmh:.0f} km/h", f"{t.average_speed_kmh:.0f} km/h",
                         str(stops)))
        self.model.set_rows(rows)
