"""Copy buttons that say they copied: the clipboard gets the text, the button reads "Copied ✓"
for a moment (and shows a tooltip), so a click is never met with silence."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QAbstractButton, QPushButton, QToolTip

COPIED = "Copied ✓"
SHOWN_MS = 1500


def copy_with_feedback(text: str, button: QAbstractButton, announce: Callable[[str], None] | None = None,
                       what: str = "text") -> None:
    """Put ``text`` on the clipboard and acknowledge it on ``button`` (and through ``announce``,
    e.g. the status bar: "Copied the URL to the clipboard")."""
    QGuiApplication.clipboard().setText(text)
    original = button.property("copyLabel") or button.text()
    button.setProperty("copyLabel", original)
    button.setText(COPIED)
    QToolTip.showText(button.mapToGlobal(button.rect().bottomLeft()), f"Copied {what} to the clipboard", button,
                      button.rect(), SHOWN_MS)

    # With ``button`` as context, the call is dropped if the button is deleted meanwhile.
    QTimer.singleShot(SHOWN_MS, button, lambda: button.setText(original))
    if announce is not None:
        announce(f"Copied {what} to the clipboard")


def copy_button(label: str, text: Callable[[], str], announce: Callable[[str], None] | None = None,
                what: str = "text") -> QAbstractButton:
    """A push button that copies ``text()`` with feedback."""
    button = QPushButton(label)
    button.clicked.connect(lambda: copy_with_feedback(text(), button, announce, what))
    return button
