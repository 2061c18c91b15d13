"""Trip figures per device for the replayed range."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHeaderView, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from app.core.display import age_text
from app.core.trips import TripStats

HEADERS = ("Device", "Distance", "Moving", "Stopped", "Max speed", "Avg speed", "Stops")


def duration_text(seconds: float) -> str:
    """'1 h 05 min', '12 min', '40 s'."""
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    return age_text(seconds)


class TripPanel(QWidget):
    """A table of trip figures, refreshed by the window once a second during replay."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.hint = QLabel("Trip figures cover the range replayed since the last seek. "
                           "Stops: ignition off or no movement for 2 min or more.")
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color: #607d8b;")
        self.table = QTableWidget(0, len(HEADERS))
        self.table.setHorizontalHeaderLabels(HEADERS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.hint)
        layout.addWidget(self.table)

    def show_trips(self, trips: dict[str, TripStats], names: dict[str, str]) -> None:
        """Show one row per device (sorted by name, then ident)."""
        idents = sorted(trips, key=lambda i: (names.get(i) or i).lower())
        self.table.setRowCount(len(idents))
        for row, ident in enumerate(idents):
            t = trips[ident]
            stops = len(t.stops) + (1 if t.open_stop() else 0)
            cells = (names.get(ident) or ident, f"{t.distance_m / 1000:.2f} km", duration_text(t.moving_s),
                     duration_text(t.stopped_s), f"{t.max_speed_kmh:.0f} km/h", f"{t.average_speed_kmh:.0f} km/h",
                     str(stops))
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)  # plain text: names are untrusted
                if column:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, column, item)
