"""Choosing devices from a checklist (which ones a replay shows, which ones an export writes),
with *All* and *None* for long lists."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)


def set_all_checked(devices: QListWidget, checked: bool) -> None:
    """Tick (or untick) every device in the list."""
    state = Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked
    for i in range(devices.count()):
        devices.item(i).setCheckState(state)


def device_item(ident: str, name: str | None, checked: bool) -> QListWidgetItem:
    """A checklist row for a device: 'name · ident' (or the ident), its ident as item data."""
    item = QListWidgetItem(f"{name} · {ident}" if name else ident)  # plain text: names are untrusted
    item.setData(Qt.ItemDataRole.UserRole, ident)
    item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
    item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
    return item


def checked_count(devices: QListWidget) -> int:
    return sum(devices.item(i).checkState() == Qt.CheckState.Checked for i in range(devices.count()))


def with_all_none(devices: QListWidget) -> QWidget:
    """``devices`` with *All* / *None* buttons and a 'n of m' count under it."""
    box = QWidget()
    layout = QVBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(devices)
    row = QHBoxLayout()
    every = QPushButton("All")
    every.setToolTip("Tick every device")
    every.clicked.connect(lambda: set_all_checked(devices, True))
    nothing = QPushButton("None")
    nothing.setToolTip("Untick every device")
    nothing.clicked.connect(lambda: set_all_checked(devices, False))
    count = QLabel("")
    count.setStyleSheet("color: #607d8b;")

    def recount() -> None:
        count.setText(f"{checked_count(devices)} of {devices.count()} devices")

    # Counted once per turn of the loop, not once per change: filling or ticking n devices is n
    # changes, and counting each time walked the whole list (500 devices: 0.3-0.4 s).
    due = QTimer(box, singleShot=True, interval=0, timeout=recount)
    devices.itemChanged.connect(lambda _: due.start())
    devices.model().rowsInserted.connect(lambda *_: due.start())  # a list filled later (read off the GUI thread)
    devices.model().rowsRemoved.connect(lambda *_: due.start())
    recount()
    row.addWidget(every)
    row.addWidget(nothing)
    row.addWidget(count, 1)
    layout.addLayout(row)
    box.setObjectName("devicesAllNone")
    return box


class DevicePicker(QDialog):
    """Tick the devices to show; returns the ticked idents."""

    def __init__(self, idents: list[str], chosen: set[str], names: dict[str, str], parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Devices to replay")
        self.list = QListWidget()
        for ident in idents:
            self.list.addItem(device_item(ident, names.get(ident), ident in chosen))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(with_all_none(self.list))
        layout.addWidget(buttons)

    def chosen(self) -> list[str]:
        return [self.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.list.count())
                if self.list.item(i).checkState() == Qt.CheckState.Checked]

    @classmethod
    def pick(cls, parent: QWidget, idents: list[str], chosen: set[str], names: dict[str, str]) -> list[str] | None:
        """Ask; None when cancelled or nothing was ticked."""
        dialog = cls(idents, chosen, names, parent)
        if dialog.exec() and dialog.chosen():
            return dialog.chosen()
        return None
