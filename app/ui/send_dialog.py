"""Ask where to re-send a recorded session (URL, token, speed)."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QDialog, QDialogButtonBox, QFormLayout, QLabel, QLineEdit, QVBoxLayout

SPEEDS: list[tuple[str, float | None]] = [("As fast as acknowledged", None), ("1× (original pace)", 1.0),
                                          ("10×", 10.0), ("60×", 60.0)]


class SendDialog(QDialog):
    """The target of `trackmon replay`, from the window."""

    def __init__(self, session_id: int, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Send session {session_id} to a listener")
        self.url = QLineEdit(placeholderText="http://host:port/path")
        self.token = QLineEdit(placeholderText="optional: sent as Authorization: Bearer <token>")
        self.speed = QComboBox()
        self.speed.addItems([label for label, _ in SPEEDS])
        self.problem = QLabel("")
        self.problem.setStyleSheet("color: #b71c1c;")
        form = QFormLayout()
        form.addRow("URL", self.url)
        form.addRow("Token", self.token)
        form.addRow("Speed", self.speed)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Messages go out as recorded, one request at a time, re-sent until answered 200."))
        layout.addLayout(form)
        layout.addWidget(self.problem)
        layout.addWidget(buttons)

    def chosen_speed(self) -> float | None:
        return SPEEDS[self.speed.currentIndex()][1]

    def _accept(self) -> None:
        if not self.url.text().strip().startswith(("http://", "https://")):
            self.problem.setText("Enter an http:// or https:// URL.")
        else:
            self.accept()
