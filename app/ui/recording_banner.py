"""A red bar across the window while the recording file cannot take data.

The recorder refuses batches (503) when the disk is full, the file was deleted or replaced, or a
write failed; the stream keeps them and re-sends. Users must see that at once and know that
nothing is lost and that recording resumes by itself — a status-bar line alone is too easy to miss.
"""

from __future__ import annotations

import time

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

from app.core.display import age_text


class RecordingBanner(QLabel):
    """Hidden while recording works; shows the recorder's problem, since when, and what happens."""

    def __init__(self) -> None:
        super().__init__()
        self.setTextFormat(Qt.TextFormat.PlainText)  # the reason can quote a path
        self.setWordWrap(True)
        self.setStyleSheet("background: #b71c1c; color: white; font-weight: 600; padding: 6px 10px;")
        self.hide()

    def show_problem(self, problem: str | None, since: float | None) -> None:
        """Show ``problem`` (None hides the banner)."""
        if problem is None:
            self.hide()
            return
        for_how_long = f" (for {age_text(time.time() - since)})" if since is not None else ""
        self.setText(f"Not recording{for_how_long}: {problem}. Recording resumes by itself once this is fixed.")
        self.show()
