"""Updating a label without making the window repaint itself.

The status bar is refreshed several times a second. `QWidget.setStyleSheet` re-polishes the
widget even when the style is unchanged, and a label whose text changes width re-lays out its
bar: measured at 50 msg/s, that repainted the whole window 12 times a second and every status
label 40 times (benchmarks/gui_everyday.py). So a label is touched only when what it shows
differs, and its width only grows while its text changes, so a ticking counter does not move its
neighbours.
"""

from __future__ import annotations

from PySide6.QtWidgets import QLabel


def set_label(label: QLabel, text: str, style: str | None = None, tooltip: str | None = None) -> None:
    """Show ``text`` (and ``style``/``tooltip`` when given) on ``label`` if anything differs."""
    if style is not None and label.styleSheet() != style:
        label.setStyleSheet(style)
    if tooltip is not None and label.toolTip() != tooltip:
        label.setToolTip(tooltip)
    if label.text() != text:
        label.setText(text)
        wanted = label.sizeHint().width()
        if wanted > label.minimumWidth():
            label.setMinimumWidth(wanted)
