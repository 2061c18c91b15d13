"""The device table: one row per device, refreshed from the fleet's changes once per frame.

A changed row is only marked stale; each cell's text and sort key is computed when the view
paints it or a sort needs it, and then cached. The model sorts itself in Python on the cached keys
at most once a second (the proxy only filters), so 1,000 devices updating ten times a second cost
little more than the few rows on screen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QEvent,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QAbstractItemView

from app.core.display import age_text, number_text, position_text, speed_text
from app.core.fleet import BATTERY_KEYS, IGNITION_KEY, POWER_KEY, DeviceState, Fleet, StatusThresholds
from app.core.health import CHECKS, ERROR, INFO, WARN
from app.ui.text import plain_tooltip

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
IDENT_ROLE = Qt.ItemDataRole.UserRole + 2
STATUS_COLORS = {"online": QColor("#2e7d32"), "stale": QColor("#b26a00"), "offline": QColor("#78909c")}
STATUS_ORDER = {"online": 0, "stale": 1, "offline": 2}
HEALTH_COLORS = {0: QColor("#2e7d32"), INFO: QColor("#1565c0"), WARN: QColor("#b26a00"), ERROR: QColor("#c62828")}
HEALTH_MARKS = {0: "✓ ok", INFO: "ⓘ ", WARN: "▲ ", ERROR: "✖ "}
MISSING = -1e300  # sort key of an absent number: sorts first, and compares natively with floats
RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _key(value: float | None) -> float:
    return MISSING if value is None else value


def _battery(d: DeviceState) -> tuple[str, float]:
    level = _num(d.param(BATTERY_KEYS[0]))
    if level is not None:
        return f"{level:.0f} %", level
    volts = _num(d.param(BATTERY_KEYS[1]))
    return number_text(volts, "V", 2), _key(volts)


def _ignition(d: DeviceState) -> tuple[str, float]:
    value = d.param(IGNITION_KEY)
    if isinstance(value, bool):
        return ("on" if value else "off"), float(value)
    return "", MISSING


def _status(d: DeviceState, now: float, th: StatusThresholds) -> tuple[str, float]:
    status = th.status(now - d.last_seen)
    return status, float(STATUS_ORDER[status])


def _measure(value: float | None, unit: str, digits: int = 0) -> tuple[str, float]:
    return number_text(value, unit, digits), _key(value)


def _health(fleet: Fleet, d: DeviceState) -> tuple[str, float]:
    severity, check = fleet.health.worst(d.ident)
    return (HEALTH_MARKS[severity] + (CHECKS[check][0] if check else "")), float(severity)


Cell = Callable[[DeviceState, float, StatusThresholds], tuple[str, Any]]

#: (title, cell, right-aligned). Sort keys are all floats or all strings within a column.
COLUMNS: list[tuple[str, Cell, bool]] = [
    ("Status", _status, False),
    ("Health", None, False),  # filled by the model, which knows the fleet's health monitor
    ("Ident", lambda d, now, th: (d.ident or "(no ident)", d.ident), False),
    ("Name", lambda d, now, th: (d.name, d.name.lower()), False),
    ("Last seen", lambda d, now, th: (age_text(now - d.last_seen), -d.last_seen), True),
    ("Msgs", lambda d, now, th: (str(d.count), float(d.count)), True),
    ("Rate/min", lambda d, now, th: _measure(d.rate_per_min(now), "", 1), True),
    ("Position", lambda d, now, th: (position_text(d.fix.lat, d.fix.lon), d.fix.lat) if d.fix else ("no fix", MISSING),
     False),
    ("Speed", lambda d, now, th: (speed_text(d.latest.speed), _key(d.latest.speed)), True),
    ("Heading", lambda d, now, th: _measure(d.latest.direction, "°"), True),
    ("Sats", lambda d, now, th: _measure(d.latest.satellites, ""), True),
    ("Ignition", lambda d, now, th: _ignition(d), False),
    ("Ext. power", lambda d, now, th: _measure(_num(d.param(POWER_KEY)), "V", 2), True),
    ("Battery", lambda d, now, th: _battery(d), True),
    ("Flagged", lambda d, now, th: (str(d.flagged) if d.flagged else "", float(d.flagged)), True),
]
#: Up to this many changed rows a frame repaints only the cells whose text changed; beyond it,
#: whole rows (one signal for the range: cheaper than comparing cells nobody may see).
PRECISE_ROWS = 100
TICKING = (0, 4, 6)  # columns that change with time alone
HEALTH_COLUMN = 1


class DeviceTableModel(QAbstractTableModel):
    """Rows in first-seen order; `refresh` applies one frame of changes."""

    def __init__(self, fleet: Fleet, thresholds: StatusThresholds, parent=None) -> None:
        super().__init__(parent)
        self.fleet = fleet
        self.thresholds = thresholds
        self.idents: list[str] = []
        self.rows: dict[str, int] = {}
        self.cells: list[list[tuple[str, Any] | None]] = []  # per row, per column: (text, sort key) or stale
        self.now = time.time()
        self.sort_column = -1
        self.sort_order = Qt.SortOrder.AscendingOrder

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.idents)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section][0]
        return None

    def cell(self, row: int, column: int) -> tuple[str, Any]:
        """(text, sort key) of a cell, computed now if the row changed since it was last asked."""
        cached = self.cells[row][column]
        if cached is None:
            device = self.fleet.devices[self.idents[row]]
            if column == HEALTH_COLUMN:
                cached = _health(self.fleet, device)
            else:
                cached = COLUMNS[column][1](device, self.now, self.thresholds)  # type: ignore[misc]
            self.cells[row][column] = cached
        return cached

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole:
            return self.cell(index.row(), index.column())[0]
        if role == SORT_ROLE:
            return self.cell(index.row(), index.column())[1]
        column = index.column()
        if role == Qt.ItemDataRole.ForegroundRole and column == 0:
            return QBrush(STATUS_COLORS[self.cell(index.row(), 0)[0]])
        if role == Qt.ItemDataRole.ForegroundRole and column == HEALTH_COLUMN:
            return QBrush(HEALTH_COLORS[int(self.cell(index.row(), HEALTH_COLUMN)[1])])
        if role == Qt.ItemDataRole.TextAlignmentRole and COLUMNS[column][2]:
            return RIGHT
        if role == IDENT_ROLE:
            return self.idents[index.row()]
        if role == Qt.ItemDataRole.ToolTipRole and column in (2, 3):
            device = self.fleet.devices[self.idents[index.row()]]
            return plain_tooltip(f"{device.name}\n{device.ident}" if device.name else device.ident)
        return None

    def refresh(self, changed: list[str], now: float) -> None:
        """Show one frame: new devices are appended, changed rows marked stale and repainted."""
        self.now = now
        stale = [None] * len(COLUMNS)
        new = [ident for ident in changed if ident not in self.rows and self.fleet.devices[ident].latest]
        if new:
            first = len(self.idents)
            self.beginInsertRows(QModelIndex(), first, first + len(new) - 1)
            for ident in new:
                self.rows[ident] = len(self.idents)
                self.idents.append(ident)
                self.cells.append(list(stale))
            self.endInsertRows()
        fresh = set(new)
        rows = [self.rows[ident] for ident in changed if ident in self.rows and ident not in fresh]
        if len(rows) <= PRECISE_ROWS:
            for row in rows:
                self._update_cells(row, range(len(COLUMNS)))
        elif rows:
            for row in rows:
                self.cells[row] = list(stale)
            self.dataChanged.emit(self.index(min(rows), 0), self.index(max(rows), len(COLUMNS) - 1))

    def _update_cells(self, row: int, columns: range | tuple[int, ...]) -> None:
        """Recompute ``columns`` of ``row`` and repaint only the cells whose text changed: a frame
        then paints the few cells that moved (speed, position, last seen), not whole rows —
        painting the table was most of the window's loop time at everyday rates. A cell never
        computed was never painted: it stays uncomputed until the view asks for it."""
        cached = self.cells[row]
        for column in columns:
            before = cached[column]
            if before is None:
                continue
            cached[column] = None
            if self.cell(row, column)[0] != before[0]:
                index = self.index(row, column)
                self.dataChanged.emit(index, index)

    def tick(self, now: float) -> None:
        """Time passed: ages, statuses and rates change without new messages."""
        self.now = now
        if len(self.idents) <= PRECISE_ROWS:
            for row in range(len(self.idents)):
                self._update_cells(row, TICKING)
            return
        for row in self.cells:
            for column in TICKING:
                row[column] = None
        if self.idents:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self.idents) - 1, max(TICKING)))

    def refresh_health(self) -> None:
        """The health rules changed: every row's Health cell is judged again."""
        for row in self.cells:
            row[HEALTH_COLUMN] = None
        if self.idents:
            self.dataChanged.emit(self.index(0, HEALTH_COLUMN), self.index(len(self.idents) - 1, HEALTH_COLUMN))

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Order rows by ``column`` (remembered; `resort` re-applies it to fresh data)."""
        self.sort_column, self.sort_order = column, order
        self.resort()

    def resort(self) -> None:
        """Re-apply the current sort to the current data, keeping selections on their devices."""
        if self.sort_column < 0 or len(self.idents) < 2:
            return
        column = self.sort_column
        order = sorted(range(len(self.idents)), key=lambda r: self.cell(r, column)[1],
                       reverse=self.sort_order == Qt.SortOrder.DescendingOrder)
        if order == list(range(len(order))):
            return
        self.layoutAboutToBeChanged.emit()
        persistent = self.persistentIndexList()
        position = {old: new for new, old in enumerate(order)}
        self.idents = [self.idents[r] for r in order]
        self.cells = [self.cells[r] for r in order]
        self.rows = {ident: r for r, ident in enumerate(self.idents)}
        self.changePersistentIndexList(persistent, [self.index(position[i.row()], i.column()) for i in persistent])
        self.layoutChanged.emit()

    def reset(self) -> None:
        """Forget all rows (the fleet was cleared)."""
        self.beginResetModel()
        self.idents.clear()
        self.rows.clear()
        self.cells.clear()
        self.endResetModel()


class DeviceFilterProxy(QSortFilterProxyModel):
    """Filters by any column's text; sorting is passed on to the source model, which keeps its
    own order (so the proxy never calls back into Python to compare rows)."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setFilterKeyColumn(-1)
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.setDynamicSortFilter(True)

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        self.sourceModel().sort(column, order)

    def visible_idents(self) -> list[str] | None:
        """The devices the filter lets through, in table order; None when nothing is filtered
        (the map shows what the list shows, as in Traccar)."""
        if not self.filterRegularExpression().pattern():
            return None
        source = self.sourceModel()
        return [source.idents[self.mapToSource(self.index(row, 0)).row()] for row in range(self.rowCount())]

    def accepts(self, ident: str | None) -> bool:
        """Whether ``ident`` is a row the current filter lets through."""
        source = self.sourceModel()
        row = source.rows.get(ident) if ident is not None else None
        return row is not None and self.filterAcceptsRow(row, QModelIndex())


class SortHold(QObject):
    """Holds the once-a-second re-sort while the pointer is over the table.

    Sorted by *Last seen*, rows trade places every second; a row moving under the pointer just as
    the user clicks selects another device. So while the pointer is over the rows the order stays
    put, and the deferred re-sort happens when it leaves."""

    def __init__(self, view: QAbstractItemView, model: DeviceTableModel) -> None:
        super().__init__(view)
        self.model = model
        self.hovered = False
        self.deferred = False
        view.viewport().installEventFilter(self)

    def resort(self) -> None:
        """Re-sort now, or when the pointer leaves the table."""
        if self.hovered:
            self.deferred = True
        else:
            self.deferred = False
            self.model.resort()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        if kind in (QEvent.Type.Enter, QEvent.Type.MouseMove, QEvent.Type.MouseButtonPress):
            self.hovered = True
        elif kind == QEvent.Type.Leave:
            self.hovered = False
            if self.deferred:
                self.resort()
        return False
