"""A checklist of devices (which ones a replay shows)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QListWidget, QListWidgetItem, QVBoxLayout, QWidget


class DevicePicker(QDialog):
    """Tick the devices to show; returns the ticked idents."""

    def __init__(self, idents: list[str], chosen: set[str], names: dict[str, str], parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Devices to replay")
        self.list = QListWidget()
        for ident in idents:
            label = f"{names[ident]} · {ident}" if names.get(ident) else ident
            item = QListWidgetItem(label)
            item.setData(Qt.ItemDataRole.UserRole, ident)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if ident in chosen else Qt.CheckState.Unchecked)
            self.list.addItem(item)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.list)
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
