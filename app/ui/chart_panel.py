"""The Charts tab: any numeric or boolean parameter of the selected device over time.

Fix fields (speed, altitude, satellites, HDOP, direction, latitude, longitude) are read from the
recording's track chunks, so the whole session is plotted; other parameters come from the
messages in the log window. pyqtgraph draws 100,000 points in tens of milliseconds (peak
downsampling, clipped to the view). A vertical cursor follows the replay clock or the selected
message.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QSplitter, QVBoxLayout, QWidget

from app.core.fleet import Fleet
from app.store.points import PointFilter, iter_points

#: Fix fields available from the track chunks: parameter key → TrackPoint field.
FIX_FIELDS = {"position.speed": "speed", "position.altitude": "alt", "position.satellites": "satellites",
              "position.hdop": "hdop", "position.direction": "direction", "position.latitude": "lat",
              "position.longitude": "lon"}
NOT_CHARTED = ("ident", "timestamp", "server.timestamp", "channel.id", "protocol.id", "device.type.id", "device.id")
COLORS = ("#1e88e5", "#e53935", "#43a047", "#fb8c00", "#8e24aa", "#00897b", "#6d4c41", "#3949ab")
pg.setConfigOptions(antialias=False, background="w", foreground="#37474f")


def chartable(params: dict[str, Any]) -> list[str]:
    """Parameters worth plotting: numbers and booleans, identity fields left out."""
    return sorted(k for k, v in params.items()
                  if type(v) in (int, float, bool) and not k.startswith(NOT_CHARTED))


class ChartPanel(QWidget):
    """Parameter list on the left, the plot on the right."""

    def __init__(self, reader: sqlite3.Connection, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.reader = reader
        self.fleet: Fleet | None = None
        self.session_id: int | None = None
        self.ident: str | None = None
        self.params = QListWidget()
        self.params.setMaximumWidth(230)
        self.params.itemChanged.connect(lambda _: self.redraw())
        self.note = QLabel("Select a device, then tick parameters")
        self.note.setTextFormat(Qt.TextFormat.PlainText)
        self.note.setStyleSheet("color: #607d8b;")
        self.plot = pg.PlotWidget(axisItems={"bottom": pg.DateAxisItem(utcOffset=0)})
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.plot.addLegend(offset=(10, 10))
        self.cursor = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#ef6c00", width=2))
        self.cursor.setVisible(False)
        self.plot.addItem(self.cursor)
        self.curves: dict[str, pg.PlotDataItem] = {}
        # Fix-field series read so far: (session, ident, field) → (times, values); refreshes read
        # only points after the last one (a point arriving out of order shows after a re-select).
        self._fix_cache: dict[tuple[int, str, str], tuple[list[float], list[float]]] = {}
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(QLabel("Parameters"))
        left_layout.addWidget(self.params)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(self.plot)
        split.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        top = QHBoxLayout()
        top.addWidget(self.note, 1)
        layout.addLayout(top)
        layout.addWidget(split, 1)

    def show_device(self, fleet: Fleet, session_id: int | None, ident: str | None) -> None:
        """Chart this device (keeps ticked parameters that it also has)."""
        changed = (fleet, session_id, ident) != (self.fleet, self.session_id, self.ident)
        if changed:
            self._fix_cache.clear()  # a new selection reads its history afresh
        self.fleet, self.session_id, self.ident = fleet, session_id, ident
        device = fleet.devices.get(ident) if ident is not None else None
        available = chartable(device.latest.params) if device is not None and device.latest else []
        ticked = self.ticked()
        current = [self.params.item(i).text() for i in range(self.params.count())]
        if available != current:
            self.params.blockSignals(True)
            self.params.clear()
            for key in available:
                item = QListWidgetItem(key)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(Qt.CheckState.Checked if key in ticked else Qt.CheckState.Unchecked)
                self.params.addItem(item)
            self.params.blockSignals(False)
        if changed or available != current:
            self.redraw()

    def ticked(self) -> list[str]:
        return [self.params.item(i).text() for i in range(self.params.count())
                if self.params.item(i).checkState() == Qt.CheckState.Checked]

    def tick(self, keys: list[str]) -> None:
        """Tick these parameters (and draw them)."""
        self.params.blockSignals(True)
        for i in range(self.params.count()):
            item = self.params.item(i)
            item.setCheckState(Qt.CheckState.Checked if item.text() in keys else Qt.CheckState.Unchecked)
        self.params.blockSignals(False)
        self.redraw()

    def series(self, key: str) -> tuple[list[float], list[float]]:
        """(times, values) of one parameter for the current device."""
        if self.ident is None or self.fleet is None:
            return [], []
        if key in FIX_FIELDS and self.session_id is not None:
            field = FIX_FIELDS[key]
            xs, ys = self._fix_cache.setdefault((self.session_id, self.ident, field), ([], []))
            after = xs[-1] if xs else None
            position = field in ("lat", "lon")
            for p in iter_points(self.reader, PointFilter(self.session_id, (self.ident,), t_from=after)):
                value = getattr(p, field)
                if (after is not None and p.ts <= after) or value is None or (position and not p.has_fix):
                    continue  # already read, or never plot an unusable position
                xs.append(p.ts)
                ys.append(float(value))
            return xs, ys
        xs, ys = [], []
        for entry in self.fleet.log:
            m = entry.message
            if m.ident == self.ident:
                value = m.params.get(key)
                if type(value) in (int, float, bool):
                    xs.append(m.ts)
                    ys.append(float(value))
        return xs, ys

    def redraw(self) -> None:
        """Draw the ticked parameters again from their sources."""
        for curve in self.curves.values():
            self.plot.removeItem(curve)
        self.curves.clear()
        legend = self.plot.plotItem.legend
        if legend is not None:
            legend.clear()
        total = 0
        for n, key in enumerate(self.ticked()):
            xs, ys = self.series(key)
            total += len(xs)
            curve = self.plot.plot(xs, ys, name=key, pen=pg.mkPen(COLORS[n % len(COLORS)], width=1.5),
                                   stepMode=None)
            curve.setDownsampling(auto=True, method="peak")
            curve.setClipToView(True)
            self.curves[key] = curve
        if self.ident is None:
            self.note.setText("Select a device, then tick parameters")
        elif not self.curves:
            self.note.setText("Tick parameters to plot them")
        else:
            self.note.setText(f"{total:,} points · fix fields: whole session; other parameters: the log window")

    def set_cursor(self, ts: float | None) -> None:
        """Move the cursor (replay position or selected message); None hides it."""
        self.cursor.setVisible(ts is not None)
        if ts is not None:
            self.cursor.setValue(ts)
