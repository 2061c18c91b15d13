"""Status labels change only what differs, and a ticking counter does not shake its neighbours."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QLabel, QStatusBar

from app.ui.label_text import set_label


class PaintCounter(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.paints = 0

    def eventFilter(self, watched, event) -> bool:
        if event.type() == QEvent.Type.Paint:
            self.paints += 1
        return False


def test_an_unchanged_label_is_not_repainted_and_widths_only_grow(qtbot) -> None:
    bar = QStatusBar()
    qtbot.addWidget(bar)
    counter_label, neighbour = QLabel(), QLabel("Recording x.sqlite")
    bar.addPermanentWidget(counter_label)
    bar.addPermanentWidget(neighbour)
    bar.resize(800, 30)
    bar.show()
    qtbot.waitExposed(bar)
    set_label(counter_label, "12,345 messages", "color: #b71c1c;", "why")
    assert (counter_label.text(), counter_label.styleSheet(), counter_label.toolTip()) == (
        "12,345 messages", "color: #b71c1c;", "why")
    qtbot.wait(50)
    counter = PaintCounter()
    counter_label.installEventFilter(counter)
    for _ in range(5):
        set_label(counter_label, "12,345 messages", "color: #b71c1c;", "why")
        qtbot.wait(20)
    assert counter.paints == 0  # the same text and style: nothing to paint
    wide = counter_label.minimumWidth()
    x = neighbour.x()
    set_label(counter_label, "9 messages")
    qtbot.wait(50)
    assert counter.paints > 0 and counter_label.minimumWidth() == wide and neighbour.x() == x
