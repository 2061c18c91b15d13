"""The Health tab: what is wrong with the selected device's data, and where."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPainter
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.display import utc_text
from app.core.health import CHECKS, INTERVAL_BINS, RULES, SEVERITY_NAMES, DeviceHealth, HealthThresholds
from app.ui.health_rules import HealthRulesDialog
from app.ui.text import plain_tooltip

SEVERITY_COLORS = {1: QColor("#e3f2fd"), 2: QColor("#fff3e0"), 3: QColor("#ffebee")}
QUIET = QColor("#78909c")
MIN_BINS = 12  # the histogram shows at least this many bins around the data, so one bar has context


def _seconds(value: float) -> str:
    if value >= 3600:
        return f"{value / 3600:g} h"
    if value >= 60:
        return f"{value / 60:g} min"
    return f"{value:g} s"


def _bin_label(i: int) -> str:
    return f"≤{_seconds(INTERVAL_BINS[i])}" if i < len(INTERVAL_BINS) else f">{_seconds(INTERVAL_BINS[-1])}"


def shown_bins(counts: list[int]) -> list[int]:
    """Which bins to draw: the used range widened to at least MIN_BINS, so that a tracker that
    always reports at the same interval shows one bar among its neighbours, labelled."""
    used = [i for i, c in enumerate(counts) if c]
    if not used:
        return []
    first, last = used[0], used[-1]
    while last - first + 1 < MIN_BINS and (first > 0 or last < len(counts) - 1):
        if first > 0:
            first -= 1
        if last - first + 1 < MIN_BINS and last < len(counts) - 1:
            last += 1
    return list(range(first, last + 1))


class IntervalHistogram(QWidget):
    """Reporting intervals: one bar per bin, labelled where there is room, counts on the bars."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(70)
        self.setMaximumHeight(110)
        self.counts: list[int] = []

    def set_counts(self, counts: list[int]) -> None:
        self.counts = counts
        self.update()

    def paintEvent(self, event: Any) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor("#fafafa"))
        shown = shown_bins(self.counts)
        if shown:
            top = max(self.counts) or 1
            width = self.width() / len(shown)
            text_height = 14
            label_every = max(1, int(52 // max(width, 1)) + 1)  # a label needs about 52 px
            for slot, i in enumerate(shown):
                count = self.counts[i]
                height = count / top * (self.height() - 2 * text_height - 4)
                rect = QRectF(slot * width + 2, self.height() - text_height - height, max(width - 4, 1), height)
                painter.fillRect(rect, QColor("#5c6bc0"))
                painter.setPen(QColor("#455a64"))
                if count and width >= 18:
                    text = f"{count:,}" if count < 10_000 else f"{count / 1000:.0f}k"
                    painter.drawText(QRectF(slot * width - 10, rect.top() - text_height, width + 20, text_height),
                                     Qt.AlignmentFlag.AlignCenter, text)
                if slot % label_every == 0 or count == top:
                    painter.drawText(QRectF(slot * width - 20, self.height() - text_height, width + 40, text_height),
                                     Qt.AlignmentFlag.AlignCenter, _bin_label(i))
        else:
            painter.setPen(QColor("#90a4ae"))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "no intervals yet")
        painter.end()


class HealthPanel(QWidget):
    """Every check with what it says now (warning, below threshold, fine), the latest occurrences
    of the chosen check, the warning rules (changeable), and the interval histogram."""

    occurrence_activated = Signal(object)  # the finding's reference (a LogEntry in the window)
    thresholds_changed = Signal(object)  # HealthThresholds, after the user changed the rules

    def __init__(self, thresholds: HealthThresholds | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.device: DeviceHealth | None = None
        self._label = ""
        self.thresholds = thresholds or HealthThresholds()
        self.summary = QLabel("Select a device")
        self.summary.setTextFormat(Qt.TextFormat.PlainText)
        self.summary.setWordWrap(True)
        self.summary.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        self.rules = QLabel("")
        self.rules.setTextFormat(Qt.TextFormat.PlainText)
        self.rules.setStyleSheet("color: #607d8b;")
        self.rules.setWordWrap(True)
        self.rules.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Minimum)
        self.change_rules = QPushButton("Warning rules…")
        self.change_rules.setToolTip("When a finding becomes a warning: satellites, HDOP, shares, durations")
        self.change_rules.clicked.connect(self.edit_rules)
        rules_row = QHBoxLayout()
        rules_row.addWidget(self.rules, 1)
        rules_row.addWidget(self.change_rules)
        self.checks = QTableWidget(0, 3)
        self.checks.setHorizontalHeaderLabels(["Check", "Now", "Seen"])
        self.checks.verticalHeader().setVisible(False)
        self.checks.verticalHeader().setDefaultSectionSize(20)
        self.checks.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.checks.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.checks.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        header = self.checks.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        self.checks.currentCellChanged.connect(lambda row, *_: self._show_occurrences(row))
        self.occurrences = QTableWidget(0, 2)
        self.occurrences.setHorizontalHeaderLabels(["Device time (UTC)", "Detail"])
        self.occurrences.verticalHeader().setVisible(False)
        self.occurrences.verticalHeader().setDefaultSectionSize(20)
        self.occurrences.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.occurrences.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.occurrences.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.occurrences.horizontalHeader().setStretchLastSection(True)
        self.occurrences.setToolTip("Double-click: show this message in the log and inspector")
        self.occurrences.cellDoubleClicked.connect(self._activate)
        self.histogram = IntervalHistogram()
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.checks)
        split.addWidget(self.occurrences)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setChildrenCollapsible(False)
        self.checks.setMinimumSize(240, 120)
        self.occurrences.setMinimumSize(200, 120)
        self.intervals = QLabel("Reporting intervals")
        self.intervals.setStyleSheet("color: #455a64;")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(3)
        layout.addWidget(self.summary)
        layout.addLayout(rules_row)
        layout.addWidget(split, 1)
        layout.addWidget(self.intervals)
        layout.addWidget(self.histogram)
        self._check_ids: list[str] = []
        self._refs: list[Any] = []
        self._show_rules()

    def _show_rules(self) -> None:
        th = self.thresholds
        self.rules.setText(f"Warns when fix problems hit ≥{th.bad_share:.0%} of {th.window_messages} messages "
                           f"for {th.persist_s:g} s, or an event repeats {th.events}× in "
                           f"{th.events_window_s / 60:g} min (hover for all rules)")
        self.rules.setToolTip(plain_tooltip("\n".join(th.describe())))

    def edit_rules(self) -> None:
        """Let the user change when findings become warnings."""
        dialog = HealthRulesDialog(self.thresholds, self)
        if dialog.exec():
            self.set_thresholds(dialog.result_thresholds())

    def set_thresholds(self, thresholds: HealthThresholds) -> None:
        """Use ``thresholds`` from now on and tell the window (which re-judges the fleet)."""
        self.thresholds = thresholds
        self._show_rules()
        self.thresholds_changed.emit(thresholds)
        if self.device is not None:
            self.show_device(self._label, self.device)

    def show_device(self, label: str, device: DeviceHealth | None) -> None:
        """Show one device's health (None: nothing selected or nothing received)."""
        self.device = device
        self._label = label
        if device is None:
            self.summary.setText("Select a device to see its health")
            self.checks.setRowCount(0)
            self.occurrences.setRowCount(0)
            self.histogram.set_counts([])
            self.intervals.setText("Reporting intervals")
            return
        report = device.report()
        interval = report["interval"]
        latency = report["latency"]["device_to_server_mean_s"]
        warnings = device.warnings()
        verdict = (f"{SEVERITY_NAMES[next(iter(warnings.values()))]} — "
                   + ", ".join(CHECKS[c][0].lower() for c in warnings) if warnings else "healthy")
        parts = [f"{label}: {verdict}", f"{report['messages']:,} messages"]
        if interval["median_s"] is not None:
            parts.append(f"usual interval {interval['median_s']:g} s (half within {interval['p25_s']:g}–"
                         f"{interval['p75_s']:g} s)")
        if latency is not None:
            parts.append(f"device→flespi {latency:.1f} s on average")
        if report["stuck"]:
            parts.append("never changing: " + ", ".join(report["stuck"][:6]))
        self.summary.setText(" · ".join(parts))
        self.summary.setStyleSheet("font-weight: 600; color: #b71c1c;" if warnings else "font-weight: 600;")
        selected = self._check_ids[self.checks.currentRow()] if 0 <= self.checks.currentRow() < len(
            self._check_ids) else None
        counts = device.counts()
        order = list(CHECKS)
        self._check_ids = sorted(CHECKS, key=lambda c: (-warnings.get(c, 0), -(counts.get(c, 0) > 0) * CHECKS[c][1],
                                                         order.index(c)))
        self.checks.setRowCount(len(self._check_ids))
        for row, check in enumerate(self._check_ids):
            label_text = CHECKS[check][0]
            warned = warnings.get(check, 0)
            seen = counts.get(check, 0)
            if warned:
                now = SEVERITY_NAMES[warned]
            elif seen:
                now = "info" if RULES[check] == "info" else "below threshold"
            else:
                now = "ok"
            items = [QTableWidgetItem(label_text), QTableWidgetItem(now), QTableWidgetItem(f"{seen:,}" if seen else "")]
            items[2].setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            for column, item in enumerate(items):
                if warned:
                    item.setBackground(QBrush(SEVERITY_COLORS[warned]))
                elif not seen:
                    item.setForeground(QBrush(QUIET))
                self.checks.setItem(row, column, item)
        row = self._check_ids.index(selected) if selected in self._check_ids else 0
        if row == self.checks.currentRow():  # no signal for the same row, but its occurrences may be new
            self._show_occurrences(row)
        else:
            self.checks.setCurrentCell(row, 0)
        self.histogram.set_counts(device.histogram)
        self.intervals.setText(f"Reporting intervals ({sum(device.histogram):,})")

    def _show_occurrences(self, row: int) -> None:
        if self.device is None or not 0 <= row < len(self._check_ids):
            return
        check = self._check_ids[row]
        finding = self.device.findings.get(check)
        if check == "stuck":  # "stuck" has no occurrences: list the parameters instead
            stuck = self.device.stuck()
            self._refs = [None] * len(stuck)
            rows = [("", f"{key} never changed") for key in stuck]
        elif finding is None:
            self._refs = []
            rows = []
        else:
            latest = list(reversed(finding.latest))
            self._refs = [ref for _, ref, _ in latest]
            rows = [(utc_text(ts, millis=True), detail) for ts, _, detail in latest]
        self.occurrences.setRowCount(len(rows))
        for r, (when, detail) in enumerate(rows):
            time_item = QTableWidgetItem(when[11:] or when)  # the time of day; the date in the tooltip
            time_item.setToolTip(when)
            self.occurrences.setItem(r, 0, time_item)
            detail_item = QTableWidgetItem(detail)
            detail_item.setToolTip(plain_tooltip(detail))
            self.occurrences.setItem(r, 1, detail_item)

    def _activate(self, row: int, column: int) -> None:
        if 0 <= row < len(self._refs) and self._refs[row] is not None:
            self.occurrence_activated.emit(self._refs[row])
