"""The device table: one row per device, refreshed from the fleet's changes once per frame."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtGui import QBrush, QColor

from app.core.display import age_text, number_text, position_text
from app.core.fleet import BATTERY_KEYS, IGNITION_KEY, POWER_KEY, DeviceState, Fleet, StatusThresholds
from app.ui.text import plain_tooltip

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
IDENT_ROLE = Qt.ItemDataRole.UserRole + 2
STATUS_COLORS = {"online": QColor("#2e7d32"), "stale": QColor("#b26a00"), "offline": QColor("#78909c")}
STATUS_ORDER = {"online": 0, "stale": 1, "offline": 2}


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _battery(d: DeviceState) -> tuple[str, float | None]:
    level = _num(d.param(BATTERY_KEYS[0]))
    if level is not None:
        return f"{level:.0f} %", level
    volts = _num(d.param(BATTERY_KEYS[1]))
    return number_text(volts, "V", 2), volts


def _ignition(d: DeviceState) -> tuple[str, float | None]:
    value = d.param(IGNITION_KEY)
    if isinstance(value, bool):
        return ("on" if value else "off"), float(value)
    return "", None


Column = tuple[str, Callable[[DeviceState, float, StatusThresholds], tuple[str, Any]]]

COLUMNS: list[Column] = [
    ("Status", lambda d, now, th: (th.status(now - d.last_seen), STATUS_ORDER[th.status(now - d.last_seen)])),
    ("Ident", lambda d, now, th: (d.ident or "(no ident)", d.ident)),
    ("Name", lambda d, now, th: (d.name, d.name.lower())),
    ("Last seen", lambda d, now, th: (age_text(now - d.last_seen), -d.last_seen)),
    ("Msgs", lambda d, now, th: (str(d.count), d.count)),
    ("Rate/min", lambda d, now, th: (number_text(r := d.rate_per_min(now), digits=1), r)),
    ("Position", lambda d, now, th: (position_text(d.fix.lat, d.fix.lon) if d.fix else "no fix",
                                     d.fix.lat if d.fix else -999.0)),
    ("Speed", lambda d, now, th: (number_text(d.latest.speed, "km/h"), d.latest.speed or 0.0)),
    ("Heading", lambda d, now, th: (number_text(d.latest.direction, "°"), d.latest.direction or 0.0)),
    ("Sats", lambda d, now, th: (number_text(d.latest.satellites), d.latest.satellites or 0.0)),
    ("Ignition", lambda d, now, th: _ignition(d)),
    ("Ext. power", lambda d, now, th: (number_text(v := _num(d.param(POWER_KEY)), "V", 2), v)),
    ("Battery", lambda d, now, th: _battery(d)),
    ("Flagged", lambda d, now, th: (str(d.flagged) if d.flagged else "", d.flagged)),
]
TICKING = [0, 3, 5]  # columns that change with time alone


class DeviceTableModel(QAbstractTableModel):
    """Rows in first-seen order; `refresh` applies one frame of changes."""

    def __init__(self, fleet: Fleet, thresholds: StatusThresholds, parent=None) -> None:
        super().__init__(parent)
        self.fleet = fleet
        self.thresholds = thresholds
        self.idents: list[str] = []
        self.rows: dict[str, int] = {}
        self.now = time.time()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.idents)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section][0]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        device = self.fleet.devices[self.idents[index.row()]]
        if role == IDENT_ROLE:
            return device.ident
        if device.latest is None:
            return None
        column = index.column()
        if role in (Qt.ItemDataRole.DisplayRole, SORT_ROLE):
            text, key = COLUMNS[column][1](device, self.now, self.thresholds)
            return text if role == Qt.ItemDataRole.DisplayRole else key
        if role == Qt.ItemDataRole.ForegroundRole and column == 0:
            return QBrush(STATUS_COLORS[self.thresholds.status(self.now - device.last_seen)])
        if role == Qt.ItemDataRole.ToolTipRole and column in (1, 2):
            return plain_tooltip(f"{device.name}\n{device.ident}" if device.name else device.ident)
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (4, 5, 7, 8, 9, 11, 12, 13):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def refresh(self, changed: list[str], now: float) -> None:
        """Show one frame: new devices are appended, changed rows repainted."""
        self.now = now
        new = [ident for ident in changed if ident not in self.rows]
        if new:
            first = len(self.idents)
            self.beginInsertRows(QModelIndex(), first, first + len(new) - 1)
            for ident in new:
                self.rows[ident] = len(self.idents)
                self.idents.append(ident)
            self.endInsertRows()
        rows = [self.rows[ident] for ident in changed if ident in self.rows]
        if rows:
            self.dataChanged.emit(self.index(min(rows), 0), self.index(max(rows), len(COLUMNS) - 1))

    def tick(self, now: float) -> None:
        """Time passed: ages, statuses and rates change without new messages."""
        self.now = now
        if self.idents:
            for column in TICKING:
                self.dataChanged.emit(self.index(0, column), self.index(len(self.idents) - 1, column))

    def reset(self) -> None:
        """Forget all rows (the fleet was cleared)."""
        self.beginResetModel()
        self.idents.clear()
        self.rows.clear()
        self.endResetModel()


class DeviceFilterProxy(QSortFilterProxyModel):
    """Sorts by each column's natural key; the filter box matches any column's text."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setSortRole(SORT_ROLE)
        self.setFilterKeyColumn(-1)
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.setDynamicSortFilter(True)

    def lessThan(self, left: QModelIndex | QPersistentModelIndex, right: QModelIndex | QPersistentModelIndex) -> bool:
        a, b = left.data(SORT_ROLE), right.data(SORT_ROLE)
        if a is None or b is None:
            return a is None and b is not None
        try:
            return a < b
        except TypeError:
            return str(a) < str(b)
