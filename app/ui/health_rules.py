"""When health findings become warnings: the thresholds a user can read and change.

`HealthRulesDialog` edits the numbers of `app.core.health.HealthThresholds` that decide what is
warned about; `load_thresholds` / `save_thresholds` keep them between runs in the app's QSettings
(group ``health``), apart from the listener settings so they never restart anything.
"""

from __future__ import annotations

from dataclasses import fields, replace

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.core.health import HealthThresholds

#: field → (label, minimum, maximum, step, suffix, shown = stored × scale)
EDITABLE: dict[str, tuple[str, float, float, float, str, float]] = {
    "min_satellites": ("Fewer satellites than", 1, 30, 1, "", 1),
    "max_hdop": ("HDOP above", 0.5, 50, 0.5, "", 1),
    "bad_share": ("Fix problems in at least", 1, 100, 5, " % of messages", 100),
    "window_messages": ("…of the latest", 2, 500, 5, " messages", 1),
    "persist_s": ("…for at least", 0, 3600, 10, " s", 1),
    "jump_kmh": ("A jump implies more than", 50, 5000, 50, " km/h", 1),
    "events": ("Events (jumps, clock, gaps) at least", 1, 20, 1, " times", 1),
    "events_window_s": ("…within", 1, 1440, 5, " minutes", 1 / 60),
}
_GROUP = "health"


def load_thresholds(store: QSettings | None) -> HealthThresholds:
    """The saved thresholds (defaults for anything missing or unreadable)."""
    defaults = HealthThresholds()
    if store is None:
        return defaults
    values = {}
    types = {f.name: f.type for f in fields(HealthThresholds)}
    for name in EDITABLE:
        raw = store.value(f"{_GROUP}/{name}")
        if raw is None:
            continue
        try:
            number = float(raw)
        except (TypeError, ValueError):
            continue
        values[name] = int(number) if types[name] in (int, "int") else number
    try:
        return replace(defaults, **values)
    except (TypeError, ValueError):
        return defaults


def save_thresholds(store: QSettings | None, thresholds: HealthThresholds) -> None:
    """Keep the editable thresholds for the next run."""
    if store is None:
        return
    for name in EDITABLE:
        store.setValue(f"{_GROUP}/{name}", getattr(thresholds, name))
    store.sync()


class HealthRulesDialog(QDialog):
    """The warning rules as numbers, with the rules in words below them."""

    def __init__(self, thresholds: HealthThresholds, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Health warnings")
        self.thresholds = thresholds
        form = QFormLayout()
        self.boxes: dict[str, QSpinBox | QDoubleSpinBox] = {}
        for name, (label, low, high, step, suffix, scale) in EDITABLE.items():
            value = getattr(thresholds, name) * scale
            whole = float(step).is_integer() and float(value).is_integer() and name != "max_hdop"
            box: QSpinBox | QDoubleSpinBox = QSpinBox() if whole else QDoubleSpinBox()
            box.setRange(int(low) if whole else low, int(high) if whole else high)
            box.setSingleStep(int(step) if whole else step)
            box.setSuffix(suffix)
            box.setValue(int(value) if whole else value)
            box.valueChanged.connect(self._show_rules)
            self.boxes[name] = box
            form.addRow(label, box)
        self.rules = QLabel("")
        self.rules.setTextFormat(Qt.TextFormat.PlainText)
        self.rules.setWordWrap(True)
        self.rules.setStyleSheet("color: #455a64;")
        self.rules.setMinimumWidth(420)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
                                   | QDialogButtonBox.StandardButton.RestoreDefaults)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).clicked.connect(self._defaults)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.rules)
        layout.addWidget(buttons)
        self._show_rules()

    def result_thresholds(self) -> HealthThresholds:
        """The thresholds as edited."""
        values = {}
        for name, box in self.boxes.items():
            scale = EDITABLE[name][5]
            value = box.value() / scale
            values[name] = round(value) if isinstance(getattr(self.thresholds, name), int) else value
        return replace(self.thresholds, **values)

    def _defaults(self) -> None:
        defaults = HealthThresholds()
        for name, box in self.boxes.items():
            box.setValue(getattr(defaults, name) * EDITABLE[name][5])

    def _show_rules(self) -> None:
        self.rules.setText("\n".join(self.result_thresholds().describe()))
