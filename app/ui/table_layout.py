"""Tables that fit what they show: columns sized from the font for their typical content, long
text elided in the middle (an ident's distinctive tail stays visible) with the full text as a
tooltip, the most looked-at columns first, and a header menu to show or hide columns."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QEvent, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QAction, QHelpEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QMenu,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QToolTip,
)

from app.ui.text import plain_tooltip

PADDING = 18  # cell margins and the sort indicator's room


class ElidedTooltipDelegate(QStyledItemDelegate):
    """Shows a cell's whole text as a tooltip when it does not fit (and the model has none)."""

    def helpEvent(self, event: QHelpEvent, view: QAbstractItemView, option: QStyleOptionViewItem,
                  index: QModelIndex | QPersistentModelIndex) -> bool:
        if event is not None and event.type() == QEvent.Type.ToolTip and index.isValid() and \
                not index.data(Qt.ItemDataRole.ToolTipRole):
            text = index.data(Qt.ItemDataRole.DisplayRole)
            if text and view.fontMetrics().horizontalAdvance(str(text)) + 8 > view.visualRect(index).width():
                QToolTip.showText(event.globalPos(), plain_tooltip(str(text)), view)
                return True
        return super().helpEvent(event, view, option, index)


def text_width(view: QTableView, text: str) -> int:
    """Pixels ``text`` takes in ``view``'s font, with the cell's padding."""
    return view.fontMetrics().horizontalAdvance(text) + PADDING


def fit_columns(view: QTableView, samples: Sequence[str | None]) -> None:
    """Size each column to hold its header and a typical value (``samples``, per logical
    column; None keeps the width)."""
    model = view.model()
    for column, sample in enumerate(samples):
        if sample is None:
            continue
        header = str(model.headerData(column, Qt.Orientation.Horizontal) or "")
        view.setColumnWidth(column, max(text_width(view, sample), text_width(view, header)))


def readable(view: QTableView) -> None:
    """Middle elision, whole-text tooltips, and a header menu to choose columns."""
    view.setTextElideMode(Qt.TextElideMode.ElideMiddle)
    view.setItemDelegate(ElidedTooltipDelegate(view))
    header = view.horizontalHeader()
    header.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
    header.customContextMenuRequested.connect(lambda pos: column_menu(view).exec(header.mapToGlobal(pos)))


def column_menu(view: QTableView) -> QMenu:
    """Tick the columns to show (in their visual order)."""
    menu = QMenu(view)
    header = view.horizontalHeader()
    model = view.model()
    for visual in range(header.count()):
        column = header.logicalIndex(visual)
        action = QAction(str(model.headerData(column, Qt.Orientation.Horizontal)), menu, checkable=True)
        action.setChecked(not header.isSectionHidden(column))
        action.toggled.connect(lambda on, c=column: header.setSectionHidden(c, not on))
        menu.addAction(action)
    return menu


def arrange(view: QTableView, order: Sequence[str], hidden: Sequence[str] = ()) -> None:
    """Put the columns titled ``order`` first, in that order (a visual move: the model is
    unchanged), and hide the ``hidden`` ones (the header menu shows them again)."""
    header: QHeaderView = view.horizontalHeader()
    model = view.model()
    titles = {str(model.headerData(c, Qt.Orientation.Horizontal)): c for c in range(model.columnCount())}
    for target, title in enumerate(order):
        if title in titles:
            header.moveSection(header.visualIndex(titles[title]), target)
    for title in hidden:
        if title in titles:
            header.setSectionHidden(titles[title], True)


#: A typical (wide) value per device-table column, in its logical order (app/ui/device_model.COLUMNS).
DEVICE_SAMPLES = {"Status": "offline", "Health": "● Few satellites", "Ident": "352625333222111",
                  "Name": "Refrigerated van 12", "Last seen": "59 min", "Msgs": "12,345", "Rate/min": "12.5",
                  "Position": "-49.069782, 128.632826", "Speed": "188 km/h", "Heading": "359 °", "Sats": "22",
                  "Ignition": "off", "Ext. power": "13.80 V", "Battery": "100 %", "Flagged": "99"}
DEVICE_ORDER = ("Status", "Name", "Ident", "Speed", "Heading", "Last seen", "Health", "Position")
DEVICE_HIDDEN = ("Rate/min", "Flagged")
DEVICE_ALWAYS_SHOWN = 5  # Status … Heading: the pane starts wide enough for these


def leading_width(view: QTableView, count: int) -> int:
    """Pixels the first ``count`` visible columns (in visual order) need, with the table's frame
    and vertical scroll bar: how wide its pane should start."""
    header = view.horizontalHeader()
    order = [header.logicalIndex(v) for v in range(header.count())]
    shown = [c for c in order if not header.isSectionHidden(c)]
    return (sum(header.sectionSize(c) for c in shown[:count]) + 2 * view.frameWidth()
            + view.verticalScrollBar().sizeHint().width() + 12)


def arrange_device_table(view: QTableView) -> None:
    """The device table: name, ident, speed and heading in view without scrolling sideways."""
    model = view.model()
    titles = [str(model.headerData(c, Qt.Orientation.Horizontal)) for c in range(model.columnCount())]
    readable(view)
    fit_columns(view, [DEVICE_SAMPLES.get(title) for title in titles])
    arrange(view, DEVICE_ORDER, DEVICE_HIDDEN)


#: The message log's columns (app/ui/log_model.MessageLogModel.headers).
LOG_SAMPLES = ("123456", "2026-01-01 00:00:00.000", "2026-01-01 00:00:00.000", "352625333222111",
               "Refrigerated van 12", "-49.069782, 128.632826", "188 km/h", "123", None)


def arrange_log_table(view: QTableView) -> None:
    """The message log: every column wide enough for its values (speed reads '76 km/h')."""
    readable(view)
    fit_columns(view, LOG_SAMPLES)
