"""The Health tab: what is wrong with the selected device's data, and where."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPainter
from PySide6.QtWidgets import (
    QHeaderView,
    QLabel,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.display import utc_text
from app.core.health import CHECKS, INTERVAL_BINS, SEVERITY_NAMES, DeviceHealth

SEVERITY_COLORS = {1: QColor("#e3f2fd"), 2: QColor("#fff3e0"), 3: QColor("#ffebee")}


def _bin_label(i: int) -> str:
    return f"≤{INTERVAL_BINS[i]:g}s" if i < len(INTERVAL_BINS) else f">{INTERVAL_BINS[-1]:g}s"


class IntervalHistogram(QWidget):
    """Reporting intervals: one bar per bin (non-empty range only), labelled."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(60)
        self.setMaximumHeight(80)
        self.counts: list[int] = []

    def set_counts(self, counts: list[int]) -> None:
        self.counts = counts
        self.update()

    def paintEvent(self, event: Any) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor("#fafafa"))
        used = [i for i, c in enumerate(self.counts) if c]
        if used:
            first, last = used[0], used[-1]
            shown = list(range(first, last + 1))
            top = max(self.counts) or 1
            width = self.width() / len(shown)
            text_height = 14
            for slot, i in enumerate(shown):
                height = self.counts[i] / top * (self.height() - text_height - 4)
                rect = QRectF(slot * width + 2, self.height() - text_height - height, max(width - 4, 1), height)
                painter.fillRect(rect, QColor("#5c6bc0"))
                painter.setPen(QColor("#455a64"))
                painter.drawText(QRectF(slot * width, self.height() - text_height, width, text_height),
                                 Qt.AlignmentFlag.AlignCenter, _bin_label(i))
        else:
            painter.setPen(QColor("#90a4ae"))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "no intervals yet")
        painter.end()


class HealthPanel(QWidget):
    """Counts per check, the latest occurrences of the chosen check, and the interval histogram."""

    occurrence_activated = Signal(object)  # the finding's reference (a LogEntry in the window)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.device: DeviceHealth | None = None
        self.summary = QLabel("Select a device")
        self.summary.setTextFormat(Qt.TextFormat.PlainText)
        self.summary.setWordWrap(True)
        self.checks = QTableWidget(0, 3)
        self.checks.setHorizontalHeaderLabels(["Check", "Severity", "Count"])
        self.checks.verticalHeader().setVisible(False)
        self.checks.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.checks.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.checks.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.checks.currentCellChanged.connect(lambda row, *_: self._show_occurrences(row))
        self.occurrences = QTableWidget(0, 2)
        self.occurrences.setHorizontalHeaderLabels(["Device time (UTC)", "Detail"])
        self.occurrences.verticalHeader().setVisible(False)
        self.occurrences.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.occurrences.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.occurrences.horizontalHeader().setStretchLastSection(True)
        self.occurrences.setToolTip("Double-click: show this message in the log and inspector")
        self.occurrences.cellDoubleClicked.connect(self._activate)
        self.histogram = IntervalHistogram()
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.checks)
        split.addWidget(self.occurrences)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        self.checks.setMinimumHeight(90)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.summary)
        layout.addWidget(split, 1)
        layout.addWidget(QLabel("Reporting intervals"))
        layout.addWidget(self.histogram)
        self._check_ids: list[str] = []
        self._refs: list[Any] = []

    def show_device(self, label: str, device: DeviceHealth | None) -> None:
        """Show one device's health (None: nothing selected or nothing received)."""
        self.device = device
        if device is None:
            self.summary.setText("Select a device")
            self.checks.setRowCount(0)
            self.occurrences.setRowCount(0)
            self.histogram.set_counts([])
            return
        report = device.report()
        interval = report["interval"]
        latency = report["latency"]["device_to_server_mean_s"]
        parts = [f"{label}: {report['messages']} messages, health {report['worst']}"]
        if interval["median_s"] is not None:
            parts.append(f"usual interval {interval['median_s']:g} s (half within {interval['p25_s']:g}–"
                         f"{interval['p75_s']:g} s)")
        if latency is not None:
            parts.append(f"device→flespi {latency:.1f} s on average")
        if report["stuck"]:
            parts.append("never changing: " + ", ".join(report["stuck"][:6]))
        self.summary.setText(" · ".join(parts))
        selected = self._check_ids[self.checks.currentRow()] if 0 <= self.checks.currentRow() < len(
            self._check_ids) else None
        counts = device.counts()
        self._check_ids = sorted(counts, key=lambda c: (-CHECKS[c][1], CHECKS[c][0]))
        self.checks.setRowCount(len(self._check_ids))
        for row, check in enumerate(self._check_ids):
            label_text, severity = CHECKS[check]
            items = [QTableWidgetItem(label_text), QTableWidgetItem(SEVERITY_NAMES[severity]),
                     QTableWidgetItem(str(counts[check]))]
            for column, item in enumerate(items):
                item.setBackground(QBrush(SEVERITY_COLORS[severity]))
                self.checks.setItem(row, column, item)
        if selected in self._check_ids:
            self.checks.setCurrentCell(self._check_ids.index(selected), 0)
        elif self._check_ids:
            self.checks.setCurrentCell(0, 0)
        else:
            self.occurrences.setRowCount(0)
        self.histogram.set_counts(device.histogram)

    def _show_occurrences(self, row: int) -> None:
        if self.device is None or not 0 <= row < len(self._check_ids):
            return
        check = self._check_ids[row]
        finding = self.device.findings.get(check)
        if finding is None:  # "stuck" has no occurrences: list the parameters instead
            stuck = self.device.stuck()
            self._refs = [None] * len(stuck)
            rows = [("", f"{key} never changed") for key in stuck]
        else:
            latest = list(reversed(finding.latest))
            self._refs = [ref for _, ref, _ in latest]
            rows = [(utc_text(ts, millis=True), detail) for ts, _, detail in latest]
        self.occurrences.setRowCount(len(rows))
        for r, (when, detail) in enumerate(rows):
            self.occurrences.setItem(r, 0, QTableWidgetItem(when))
            self.occurrences.setItem(r, 1, QTableWidgetItem(detail))

    def _activate(self, row: int, column: int) -> None:
        if 0 <= row < len(self._refs) and self._refs[row] is not None:
            self.occurrence_activated.emit(self._refs[row])
