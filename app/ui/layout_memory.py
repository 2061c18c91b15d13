"""Panel sizes the user chose stay chosen: a splitter's sizes are saved when it is moved and put
back at the next start (in the settings file, under ``layout/``)."""

from __future__ import annotations

from PySide6.QtCore import QByteArray, QSettings, QTimer
from PySide6.QtWidgets import QSplitter


def remember_splitter(splitter: QSplitter, store: QSettings | None, key: str) -> None:
    """Restore ``splitter``'s saved sizes (if any) and save them whenever the user moves it."""
    if store is None:
        return
    name = f"layout/{key}"
    saved = store.value(name)
    if isinstance(saved, QByteArray | bytes) and saved:
        # Once the window is laid out: restored before, the sizes would be rescaled to the
        # splitter's first (smaller) geometry.
        QTimer.singleShot(0, splitter, lambda: splitter.restoreState(QByteArray(saved)))
    splitter.splitterMoved.connect(lambda *_: store.setValue(name, splitter.saveState()))
