"""A status-bar label that gives way: with less room than its text needs it shows the text
elided ("…") rather than cut off at the edge, so that a message that must be read whole (the live
view catching up) keeps its room. ``text()`` stays the whole text."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPainter, QPaintEvent
from PySide6.QtWidgets import QLabel

#: What the label keeps at least, in characters' widths (its start and end around the "…").
MIN_CHARACTERS = 12


class ElidingLabel(QLabel):
    """A one-line plain-text label that may be squeezed below its text's width (see the module),
    elided where ``mode`` says (the middle keeps a file name's extension, the right a list's start)."""

    def __init__(self, text: str = "", mode: Qt.TextElideMode = Qt.TextElideMode.ElideMiddle) -> None:
        super().__init__(text)
        self._mode = mode

    def minimumSizeHint(self) -> QSize:
        hint = super().minimumSizeHint()
        least = self.fontMetrics().averageCharWidth() * MIN_CHARACTERS
        return QSize(min(hint.width(), least), hint.height())

    def paintEvent(self, event: QPaintEvent) -> None:
        room = self.contentsRect().width()
        text = self.text()
        if self.fontMetrics().horizontalAdvance(text) <= room:
            super().paintEvent(event)
            return
        painter = QPainter(self)
        elided = self.fontMetrics().elidedText(text, self._mode, room)
        self.style().drawItemText(painter, self.contentsRect(), int(self.alignment() | Qt.AlignmentFlag.AlignVCenter),
                                  self.palette(), self.isEnabled(), elided, self.foregroundRole())
        painter.end()
