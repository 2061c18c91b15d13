"""A table over a list that keeps only its newest ``capacity`` items (log-like panels)."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt

Item = TypeVar("Item")
ITEM_ROLE = Qt.ItemDataRole.UserRole + 1


class BoundedListModel(QAbstractTableModel, Generic[Item]):
    """Rows are items, oldest first. Subclasses set ``headers`` and implement `cell`."""

    headers: tuple[str, ...] = ()

    def __init__(self, capacity: int, parent=None) -> None:
        super().__init__(parent)
        self.capacity = capacity
        self.items: list[Item] = []

    def cell(self, item: Item, column: int, role: int) -> Any:
        """What ``role`` shows for ``column`` of ``item`` (None for nothing)."""
        raise NotImplementedError

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.items)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.headers)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.headers[section]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        item = self.items[index.row()]
        return item if role == ITEM_ROLE else self.cell(item, index.column(), role)

    def append(self, items: list[Item]) -> None:
        """Add one frame's new items, dropping the oldest beyond capacity."""
        if not items:
            return
        items = items[-self.capacity:]
        overflow = len(self.items) + len(items) - self.capacity
        if overflow > 0:
            self.beginRemoveRows(QModelIndex(), 0, overflow - 1)
            del self.items[:overflow]
            self.endRemoveRows()
        first = len(self.items)
        self.beginInsertRows(QModelIndex(), first, first + len(items) - 1)
        self.items.extend(items)
        self.endInsertRows()

    def reset(self) -> list[Item]:
        """Remove every row; returns the items, for the caller to free when it suits (a full
        log is a million objects: `ui/slow_release`)."""
        self.beginResetModel()
        held, self.items = self.items, []
        self.endResetModel()
        return held
