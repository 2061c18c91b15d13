"""An orange bar across the window while the stream is stuck on one refused batch.

flespi re-sends a refused batch forever and sends nothing newer, so from the window it looks as
if the trackers went quiet; only the reject count grows. The bar says what is refused, how often,
and what to change, and offers to accept such batches as flagged (kept whole, see
``server/poison.py``) — a setting kept with the others, applied to the running listener at once.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QWidget

from app.core.display import age_text
from app.server.listener import Listener
from app.server.poison import Stall
from app.ui.label_text import set_label

#: QSettings key of the "accept stuck batches as flagged" setting.
ACCEPT_KEY = "stuck/accept_batches"


class StallBanner(QWidget):
    """Hidden while the stream flows; shows the current stall and the accept setting."""

    def __init__(self, store: QSettings | None = None) -> None:
        super().__init__()
        self.store = store
        self.listener: Listener | None = None
        self.setObjectName("stall-banner")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.setStyleSheet("#stall-banner { background: #e65100; } QLabel, QCheckBox { color: white; "
                           "font-weight: 600; }")
        self.label = QLabel("")
        self.label.setTextFormat(Qt.TextFormat.PlainText)  # the reason quotes what the client sent
        self.label.setWordWrap(True)
        self.accept = QCheckBox("Accept stuck batches as flagged (kept whole, stream moves on)")
        self.accept.setChecked(self.saved_accept())
        self.accept.toggled.connect(self._accept_toggled)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.accept)
        self.hide()

    def saved_accept(self) -> bool:
        if self.store is None:
            return False
        raw = self.store.value(ACCEPT_KEY, False)
        return raw if isinstance(raw, bool) else str(raw).lower() == "true"

    def attach(self, listener: Listener) -> None:
        """A (re)started listener: apply the saved setting to it."""
        self.listener = listener
        listener.stalls.accept = self.accept.isChecked()

    def refresh(self) -> None:
        """Show the listener's current stall, or hide (called every second by the window)."""
        self.show_stall(self.listener.stalls.stall if self.listener is not None else None)

    def show_stall(self, stall: Stall | None) -> None:
        """Show ``stall`` (None hides the bar); the label changes only when its text does."""
        if stall is None:
            if not self.isHidden():
                self.hide()
            return
        since = age_text(time.time() - stall.first_at)
        extra = "" if stall.acceptable else " It cannot be accepted as flagged: it was never read whole."
        set_label(self.label, f"{stall.text()} (for {since}){extra}")
        if self.accept.isVisibleTo(self) != stall.acceptable:
            self.accept.setVisible(stall.acceptable)
        if self.isHidden():
            self.show()

    def _accept_toggled(self, on: bool) -> None:
        if self.listener is not None:
            self.listener.stalls.accept = on
        if self.store is not None:
            self.store.setValue(ACCEPT_KEY, on)
            self.store.sync()
