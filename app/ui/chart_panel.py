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

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QSplitter, QVBoxLayout, QWidget

from app.core.fleet import Fleet
from app.server.error_words import plain
from app.store.points import PointFilter, iter_points

#: Fix fields available from the track chunks: parameter key → TrackPoint field.
FIX_FIELDS = {"position.speed": "speed", "position.altitude": "alt", "position.satellites": "satellites",
              "position.hdop": "hdop", "position.direction": "direction", "position.latitude": "lat",
              "position.longitude": "lon"}
NOT_CHARTED = ("ident", "timestamp", "server.timestamp", "channel.id", "protocol.id", "device.type.id", "device.id")
COLORS = ("#1e88e5", "#e53935", "#43a047", "#fb8c00", "#8e24aa", "#00897b", "#6d4c41", "#3949ab", "#c0ca33",
          "#d81b60", "#5e35b1", "#00acc1")
#: A line breaks where consecutive points are further apart than this many times the usual
#: interval (and at least GAP_MIN seconds): no line drawn across a time nothing was reported.
GAP_FACTOR = 5.0
GAP_MIN = 60.0
pg.setConfigOptions(antialias=False, background="w", foreground="#37474f")


def chartable(params: dict[str, Any]) -> list[str]:
    """Parameters worth plotting: numbers and booleans, identity fields left out."""
    return sorted(k for k, v in params.items()
                  if type(v) in (int, float, bool) and not k.startswith(NOT_CHARTED))


def unit_of(key: str, sample: Any = None) -> str:
    """The unit a parameter is plotted in; parameters of one unit share an axis, others get their
    own (flespi's parameter naming: position.speed km/h, *.voltage V, battery.level %, ...)."""
    k = key.lower()
    if type(sample) is bool:
        return "on / off"
    for ends, unit in ((("speed",), "km/h"), (("altitude",), "m"), (("direction", "heading", "latitude", "longitude"),
                       "°"), (("voltage",), "V"), (("current",), "A"), (("temperature",), "°C"),
                       (("mileage", "odometer", "distance"), "km"), (("satellites",), "satellites"),
                       (("hdop", "pdop"), "DOP"), (("battery.level", "fuel.level", "percent"), "%")):
        if k.endswith(ends):
            return unit
    return key  # unknown unit: an axis of its own, named after the parameter


def with_gaps(xs: list[float], ys: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """The series with a NaN between points further apart than a gap (drawn with
    connect='finite', so the line breaks there)."""
    x = np.asarray(xs, dtype=float)
    y = np.asarray(ys, dtype=float)
    if len(x) < 3:
        return x, y
    steps = np.diff(x)
    limit = max(GAP_MIN, GAP_FACTOR * float(np.median(steps)))
    gaps = np.nonzero(steps > limit)[0] + 1
    if not len(gaps):
        return x, y
    return np.insert(x, gaps, (x[gaps - 1] + x[gaps]) / 2), np.insert(y, gaps, np.nan)


class ChartPanel(QWidget):
    """Parameter list on the left; on the right one plot per unit (km/h, %, V…), stacked and
    sharing the time axis, titled with the device. A parameter keeps its colour while ticked."""

    def __init__(self, reader: sqlite3.Connection, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.reader = reader
        self.fleet: Fleet | None = None
        self.session_id: int | None = None
        self.ident: str | None = None
        self.params = QListWidget()
        self.params.setMaximumWidth(230)
        self.params.itemChanged.connect(lambda _: self.redraw())
        self.title = QLabel("")
        self.title.setTextFormat(Qt.TextFormat.PlainText)
        self.title.setStyleSheet("font-weight: 700; color: #263238;")
        self.note = QLabel("Select a device, then tick parameters")
        self.note.setTextFormat(Qt.TextFormat.PlainText)
        self.note.setStyleSheet("color: #607d8b;")
        self.unreadable = ""  # why the recording could not be read at the last redraw ("" if it could)
        self.graphs = pg.GraphicsLayoutWidget()
        self.plots: dict[str, pg.PlotItem] = {}  # unit → its plot, top to bottom in tick order
        self.cursors: list[pg.InfiniteLine] = []
        self._cursor_ts: float | None = None
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.colors: dict[str, str] = {}  # parameter → its colour, kept while it stays ticked
        self.units: dict[str, str] = {}
        # Fix-field series read so far: (session, ident, field) → (times, values); refreshes read
        # only points after the last one (a point arriving out of order shows after a re-select).
        self._fix_cache: dict[tuple[int, str, str], tuple[list[float], list[float]]] = {}
        # parameter → (points, last time) drawn: an unchanged series is not sent to the plot again
        self._drawn: dict[str, tuple[int, float | None]] = {}
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(QLabel("Parameters"))
        left_layout.addWidget(self.params)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(self.graphs)
        split.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        top = QHBoxLayout()
        top.addWidget(self.title)
        top.addWidget(self.note, 1)
        layout.addLayout(top)
        layout.addWidget(split, 1)

    @property
    def cursor(self) -> pg.InfiniteLine:
        """The time cursor of the top plot (every plot has one at the same time)."""
        return self.cursors[0] if self.cursors else self._spare_cursor()

    def _spare_cursor(self) -> pg.InfiniteLine:
        line = pg.InfiniteLine(angle=90, movable=False)
        line.setVisible(False)
        return line

    def set_reader(self, reader: sqlite3.Connection) -> None:
        """Read another recording file from now on (the recorder moved to it): a session id there
        names another session, so nothing read from the old one is kept."""
        self.reader = reader
        self._fix_cache.clear()
        self._drawn.clear()

    def show_device(self, fleet: Fleet, session_id: int | None, ident: str | None) -> None:
        """Chart this device (keeps ticked parameters that it also has)."""
        changed = (fleet, session_id, ident) != (self.fleet, self.session_id, self.ident)
        if changed:
            self._fix_cache.clear()  # a new selection reads its history afresh
            self._drawn.clear()
        self.fleet, self.session_id, self.ident = fleet, session_id, ident
        device = fleet.devices.get(ident) if ident is not None else None
        self.title.setText("" if device is None else (f"{device.name} · {device.ident}" if device.name
                                                      else device.ident))
        latest = device.latest.params if device is not None and device.latest else {}
        available = chartable(latest)
        self.units = {key: unit_of(key, latest[key]) for key in available}
        ticked = self.ticked()
        current = [self.params.item(i).text() for i in range(self.params.count())]
        if available != current:
            self.params.blockSignals(True)
            self.params.clear()
            for key in available:
                item = QListWidgetItem(key)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(Qt.CheckState.Checked if key in ticked else Qt.CheckState.Unchecked)
                item.setToolTip(f"plotted in {self.units[key]}")
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
            known = len(xs)
            try:
                for p in iter_points(self.reader, PointFilter(self.session_id, (self.ident,), t_from=after)):
                    value = getattr(p, field)
                    if (after is not None and p.ts <= after) or value is None or (position and not p.has_fix):
                        continue  # already read, or never plot an unusable position
                    xs.append(p.ts)
                    ys.append(float(value))
            except sqlite3.Error as exc:  # the file moved away or cannot be read: what was read before stays
                del xs[known:], ys[known:]  # not a part: the next read starts after the last point kept
                self.unreadable = plain(exc)
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

    def color(self, key: str) -> str:
        """``key``'s colour: the one it had, else the first one no ticked parameter uses."""
        if key not in self.colors:
            used = set(self.colors.values())
            free = [c for c in COLORS if c not in used]
            self.colors[key] = free[0] if free else COLORS[len(self.colors) % len(COLORS)]
        return self.colors[key]

    def _layout_plots(self, units: list[str]) -> None:
        """One plot per unit, in ``units`` order, their time axes linked; rebuilt only when the
        set of units changes."""
        if list(self.plots) == units:
            return
        self.curves.clear()  # their plots go below
        self._drawn.clear()
        self.graphs.clear()
        self.plots.clear()
        self.cursors.clear()
        first: pg.PlotItem | None = None
        for row, unit in enumerate(units):
            plot = self.graphs.addPlot(row=row, col=0, axisItems={"bottom": pg.DateAxisItem(utcOffset=0)})
            plot.showGrid(x=True, y=True, alpha=0.2)
            plot.setLabel("left", unit)
            plot.getAxis("left").enableAutoSIPrefix(False)  # '76', never '0.076 k'
            plot.getAxis("left").setWidth(62)  # stacked plots line up
            plot.addLegend(offset=(10, 5))
            if first is None:
                first = plot
            else:
                plot.setXLink(first)
            if row < len(units) - 1:
                plot.getAxis("bottom").setStyle(showValues=False)
            line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#ef6c00", width=2))
            line.setVisible(self._cursor_ts is not None)
            if self._cursor_ts is not None:
                line.setValue(self._cursor_ts)
            plot.addItem(line)
            self.cursors.append(line)
            self.plots[unit] = plot

    def redraw(self) -> None:
        """Draw the ticked parameters from their sources; a series that did not change is not sent
        to the plot again."""
        ticked = self.ticked()
        for key in [k for k in self.colors if k not in ticked]:
            del self.colors[key]  # unticked: its colour is free again
        units: list[str] = []
        for key in ticked:
            unit = self.units.get(key, key)
            if unit not in units:
                units.append(unit)
        self._layout_plots(units)
        for key in [k for k in self.curves if k not in ticked]:
            curve = self.curves.pop(key)
            self._drawn.pop(key, None)
            plot = self.plots.get(self.units.get(key, key))
            if plot is not None:
                plot.removeItem(curve)
                if plot.legend is not None:
                    plot.legend.removeItem(curve)
        total = 0
        self.unreadable = ""
        for key in ticked:
            xs, ys = self.series(key)
            total += len(xs)
            curve = self.curves.get(key)
            if curve is None:
                plot = self.plots[self.units.get(key, key)]
                curve = plot.plot([], [], name=key, pen=pg.mkPen(self.color(key), width=1.5), connect="finite")
                curve.setDownsampling(auto=True, method="peak")
                curve.setClipToView(True)
                self.curves[key] = curve
            if self._drawn.get(key) != (len(xs), xs[-1] if xs else None):
                x, y = with_gaps(xs, ys)
                curve.setData(x, y, connect="finite")
                view = curve.getViewBox()
                if view is not None:
                    view.updateAutoRange()  # the range now, not at the next paint (clipping uses it)
                self._drawn[key] = (len(xs), xs[-1] if xs else None)
        if self.ident is None:
            self.note.setText("Select a device, then tick parameters")
        elif not self.curves:
            self.note.setText("Tick parameters to plot them")
        else:
            self.note.setText(f"{total:,} points · fix fields: whole session; other parameters: the log window · "
                              "lines break where nothing was reported")
        if self.unreadable:
            self.note.setText(f"Could not read the recording (fix fields end where it was last read): "
                              f"{self.unreadable}")

    def set_cursor(self, ts: float | None) -> None:
        """Move the cursor (replay position or selected message); None hides it."""
        self._cursor_ts = ts
        for line in self.cursors:
            line.setVisible(ts is not None)
            if ts is not None:
                line.setValue(ts)
