"""Replay mode: a controller that moves a recording's clock and feeds the fleet, and its bar.

The controller is another source for the same `Fleet` the live listener feeds, so the table,
map, log and inspector need nothing special: seeking seeds the fleet from a snapshot, playing
applies the points between two instants, and the frame timer shows the changes as usual.

A seek reads the latest batches of every device (hundreds of them): it runs in a reading thread
(`BackgroundRead`) and the fleet is seeded when the snapshot arrives; playing waits for it.
Playing reads each tick's stretch of the recording in a reading thread too (up to 2,500 messages
normalized: 100–165 ms at full speed, which froze the window every tick when read here); the next
tick asks for the next stretch only once the last one is shown, so playback goes as fast as the
reads allow, in order, and nothing is skipped.
"""

from __future__ import annotations

import itertools
import sqlite3
from dataclasses import dataclass
from functools import partial
from typing import Any

from PySide6.QtCore import QObject, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSlider,
    QStyle,
    QStyleOptionSlider,
    QVBoxLayout,
    QWidget,
)

from app.core.display import utc_text
from app.core.filters import FilterError, Predicate, compile_filter
from app.core.fleet import IGNITION_KEY, Fleet, LogEntry
from app.core.trips import TripStats
from app.store.points import TrackPoint
from app.store.replay import DeviceSnapshot, ReplayedMessage, ReplaySource, seek_trail
from app.ui.background_read import BackgroundRead, Opener
from app.ui.slow_release import SlowRelease

SPEEDS: list[tuple[str, float | None]] = [("1×", 1.0), ("2×", 2.0), ("5×", 5.0), ("10×", 10.0), ("60×", 60.0),
                                          ("600×", 600.0), ("As fast as possible", None)]
TICK_MS = 100
#: Messages one tick may bring ("as fast as possible" and the fastest speeds): the loop keeps room
#: to draw, and the clock moves only as far as what was shown.
MAX_POINTS_PER_TICK = 2500
SLIDER_STEPS = 10_000
DENSITY_BINS = 200  # bars of the density strip


class ReplayController(QObject):
    """Moves the replay clock and keeps the fleet (and trip figures) at that instant."""

    moved = Signal(float)
    seeked = Signal(float)  # the fleet was rebuilt for a new instant: views start over
    playing_changed = Signal(bool)

    seek_failed = Signal(str)  # a seek could not read the file: why

    def __init__(self, source: ReplaySource, fleet: Fleet, trail_length: int, opener: Opener, releaser: SlowRelease,
                 parent: QObject | None = None) -> None:
        """``opener``: a read-only connection on the file the session was opened from, or an error
        (seeks and playback read there, never in a file that has replaced it since)."""
        super().__init__(parent)
        self.source = source
        self.fleet = fleet
        self._releaser = releaser  # the window's: a seek lets go of the fleet shown before
        self.trail_length = trail_length
        self.t = source.start
        self.speed: float | None = 1.0
        self.where: Predicate | None = None  # only messages matching this are played
        self.trips: dict[str, TripStats] = {}
        self.timer = QTimer(self, interval=TICK_MS, timeout=self._tick)
        self._reads = BackgroundRead(opener, self._seeded, self._seek_failed, "trackmon-replay-seek")
        self._stretches = BackgroundRead(opener, self._stretch_read, self._play_failed, "trackmon-replay-play")
        #: The instant the latest seek being read lands on (None: not known before it is read, a step
        #: back); what play and step back start from while it is read.
        self._target: float | None = None
        self._forward_after_seek = False  # ▶ pressed while a seek was read: taken once it lands
        reads, stretches = self._reads, self._stretches
        self.destroyed.connect(lambda *_: (reads.drop(), stretches.drop()))  # reads landing later find no controller

    @property
    def playing(self) -> bool:
        return self.timer.isActive()

    @property
    def seeking(self) -> bool:
        """A seek is being read; the fleet still shows the previous instant."""
        return self._reads.busy

    def seek(self, t: float) -> None:
        """Show the recording as it was at ``t``; trip figures start again from here. The fleet
        changes when the snapshot has been read (`seeked`); a newer seek replaces a waiting one."""
        t = min(max(t, self.source.start), self.source.end)
        self._target = t
        self._forward_after_seek = False
        self._stretches.drop()  # a stretch read from the instant left behind is not shown
        self._reads.request(partial(_snapshot_at, self.source, t, self._trail()))

    def _heading_for(self) -> float:
        """Where the replay is about to be: the instant being read if it is known, else the current one."""
        return self._target if self.seeking and self._target is not None else self.t

    def close(self) -> None:
        """Stop playing; a seek still being read is dropped."""
        self.pause()
        self._reads.drop()

    def _trail(self) -> int:
        return seek_trail(self.trail_length, len(self.source.idents))

    def _seek_failed(self, why: str) -> None:
        self._forward_after_seek = False
        self.seek_failed.emit(why)

    def show(self, t: float, snapshots: dict[str, DeviceSnapshot]) -> None:
        """Show an instant already read (the session's start, read when it was opened)."""
        self._seeded((t, snapshots))

    def _seeded(self, found: tuple[float, dict[str, DeviceSnapshot]] | None) -> None:
        if not self.seeking:
            self._target = None
        if found is None:  # nothing earlier to step back to
            return
        t, snapshots = found
        self._releaser.later(self.fleet.clear())
        self.trips.clear()
        for snap in snapshots.values():
            latest = snap.latest
            entry = LogEntry(0, latest.received_at, latest.message, latest.batch_id, latest.index)
            self.fleet.seed(entry, snap.previous.message if snap.previous else None,
                            snap.fix.message if snap.fix else None, snap.trail, latest.message.ts)
        self.t = t
        self.seeked.emit(t)
        self.moved.emit(t)
        if self._forward_after_seek and not self.seeking:
            self._forward_after_seek = False
            self.step_forward()

    def play(self) -> None:
        if self._heading_for() >= self.source.end:
            self.seek(self.source.start)
        self.timer.start()
        self.playing_changed.emit(True)

    def pause(self) -> None:
        self.timer.stop()
        self._stretches.drop()  # paused where it is shown: a stretch still being read is not
        self.playing_changed.emit(False)

    def toggle(self) -> None:
        self.pause() if self.playing else self.play()

    def set_speed(self, speed: float | None) -> None:
        self.speed = speed

    def step_forward(self) -> None:
        """Move to the next message (of any shown device); pressed while a seek is read, from
        where that seek lands."""
        if self.seeking:
            self._forward_after_seek = True
            return
        self._stretches.drop()  # the step moves on from what is shown, once
        following = self.source.next_time(self.t)
        if following is not None:
            self._show_stretch(read_stretch(self.source, self.t, following, None, self.where))

    def step_back(self) -> None:
        """Move to the previous message (before where a seek being read lands). Presses made while
        one step back is read count once."""
        base = self._heading_for()
        self._target = None
        self._forward_after_seek = False
        self._stretches.drop()
        self._reads.request(partial(_snapshot_before, self.source, base, self._trail()))

    @property
    def reading_stretch(self) -> bool:
        """The next stretch of playback is being read (the fleet shows the one before)."""
        return self._stretches.busy

    def _tick(self) -> None:
        if self.seeking or self._stretches.busy:  # play on from what is shown (or being sought)
            return
        target = self.source.end if self.speed is None else min(self.source.end,
                                                                 self.t + TICK_MS / 1000 * self.speed)
        self._stretches.request(partial(_stretch_at, self.source, self.t, target, MAX_POINTS_PER_TICK, self.where))

    def _stretch_read(self, stretch: Stretch) -> None:
        if stretch.after != self.t or not self.playing:  # moved or paused meanwhile: not this stretch
            return
        self._show_stretch(stretch)
        if self.t >= self.source.end:
            self.pause()

    def _play_failed(self, why: str) -> None:
        self.pause()
        self.seek_failed.emit(why)

    def _show_stretch(self, stretch: Stretch) -> None:
        """Fold a stretch into the fleet (a batch at a time), note trips, move the clock."""
        group: list[Any] = []
        for point, replayed in stretch.items:
            if group and group[0][1].batch_id != point.batch_id:
                self._apply(group)
                group = []
            group.append((point, replayed))
            self._trip(point, replayed.message.params.get(IGNITION_KEY))
        if group:
            self._apply(group)
        self.t = stretch.until
        self.moved.emit(self.t)

    def _apply(self, group: list[Any]) -> None:
        first = group[0][1]
        self.fleet.apply([replayed.message for _, replayed in group], first.received_at, first.batch_id,
                         indexes=[replayed.index for _, replayed in group], seen_at=group[-1][0].ts)

    def _trip(self, point: TrackPoint, ignition: Any) -> None:
        if point.has_fix:
            trip = self.trips.get(point.ident)
            if trip is None:
                trip = self.trips[point.ident] = TripStats()
            trip.add(point.ts, point.lat, point.lon, point.speed,  # type: ignore[arg-type]
                     ignition if isinstance(ignition, bool) else None)


@dataclass(frozen=True, slots=True)
class Stretch:
    """What playback shows next: the messages after ``after`` up to ``until`` that match the
    replay's filter, in time order, with the points they are at."""

    after: float
    until: float
    items: list[tuple[TrackPoint, ReplayedMessage]]


def read_stretch(source: ReplaySource, after: float, until: float, limit: int | None,
                 where: Predicate | None) -> Stretch:
    """The messages after ``after`` up to ``until``, or about ``limit`` of them: cut short, the
    stretch ends at the last instant it holds whole (the next one starts after it, so messages
    sharing the instant where the limit fell are neither skipped nor shown twice)."""
    points = list(itertools.islice(source.points_between(after, until), limit))
    end = until
    if limit is not None and len(points) == limit:
        cut = points[-1].ts
        whole = [p for p in points if p.ts < cut]
        if whole:
            points, end = whole, whole[-1].ts
        else:  # more than ``limit`` messages at one instant: all of them, at once
            points, end = list(source.points_between(after, cut)), cut
    items = []
    for point in points:
        replayed = source.message(point)
        if where is None or where(replayed.message.params):
            items.append((point, replayed))
    return Stretch(after, end, items)


def _stretch_at(source: ReplaySource, after: float, until: float, limit: int, where: Predicate | None,
                conn: sqlite3.Connection) -> Stretch:
    """In the reading thread: the next stretch of playback."""
    return read_stretch(source.on(conn), after, until, limit, where)


def _snapshot_at(source: ReplaySource, t: float, trail: int,
                 conn: sqlite3.Connection) -> tuple[float, dict[str, DeviceSnapshot]]:
    """In the reading thread: every device at ``t``."""
    return t, source.on(conn).snapshot(t, trail)


def _snapshot_before(source: ReplaySource, t: float, trail: int,
                     conn: sqlite3.Connection) -> tuple[float, dict[str, DeviceSnapshot]] | None:
    """In the reading thread: every device at the last message before ``t`` (None: there is none)."""
    reading = source.on(conn)
    earlier = reading.previous_time(t)
    return None if earlier is None else (earlier, reading.snapshot(earlier, trail))


class DensityStrip(QWidget):
    """Where the recording has data: a bar per time bin, with the replay position marked. A click
    (or a drag) on it asks to go to that point of the recording."""

    clicked_at = Signal(float)  # 0..1 along the recording

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFixedHeight(22)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip("Click to go to this point of the recording")
        self.bins: list[float] = []
        self.position = 0.0  # 0..1

    def set_density(self, bins: list[float]) -> None:
        self.bins = bins
        self.update()

    def set_position(self, fraction: float) -> None:
        self.position = fraction
        self.update()

    def paintEvent(self, event: Any) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor("#eceff1"))
        if self.bins:
            top = max(self.bins) or 1.0
            width = self.width() / len(self.bins)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor("#90a4ae"))
            for i, count in enumerate(self.bins):
                if count:
                    height = max(1.0, count / top * (self.height() - 2))
                    painter.drawRect(QRectF(i * width, self.height() - height, max(width - 0.5, 0.5), height))
        painter.setPen(QColor("#e65100"))
        x = self.position * (self.width() - 1)
        painter.drawLine(int(x), 0, int(x), self.height())
        painter.end()

    def _ask(self, event: Any) -> None:
        width = max(self.width() - 1, 1)
        self.clicked_at.emit(min(max(event.position().x() / width, 0.0), 1.0))

    def mousePressEvent(self, event: Any) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self._ask(event)

    def mouseMoveEvent(self, event: Any) -> None:
        if event.buttons() & Qt.MouseButton.LeftButton:
            self._ask(event)


class TimelineSlider(QSlider):
    """A slider whose groove, clicked, jumps the handle there (Qt's default only pages towards the
    click, and a page step is not a seek); dragging the handle works as usual."""

    jumped = Signal(int)

    def mousePressEvent(self, event: Any) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            option = QStyleOptionSlider()
            self.initStyleOption(option)
            handle = self.style().subControlRect(QStyle.ComplexControl.CC_Slider, option,
                                                 QStyle.SubControl.SC_SliderHandle, self)
            if not handle.contains(event.position().toPoint()):
                groove = self.style().subControlRect(QStyle.ComplexControl.CC_Slider, option,
                                                     QStyle.SubControl.SC_SliderGroove, self)
                span = groove.width() - handle.width()
                x = event.position().x() - groove.x() - handle.width() / 2
                value = QStyle.sliderValueFromPosition(self.minimum(), self.maximum(), round(x), max(span, 1))
                self.setValue(value)
                self.jumped.emit(value)
                event.accept()
                return
        super().mousePressEvent(event)


class ReplayBar(QWidget):
    """The timeline: transport buttons, speed, time, density strip and slider; clearly 'REPLAY'."""

    back_to_live = Signal()
    devices_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller: ReplayController | None = None
        self.setObjectName("replayBar")
        self.setStyleSheet("#replayBar { background: #fff3e0; border-top: 2px solid #ef6c00; }")
        self.badge = QLabel("REPLAY")
        self.badge.setStyleSheet("background: #ef6c00; color: white; font-weight: 700; padding: 2px 8px;"
                                 " border-radius: 3px;")
        self.title = QLabel("")
        self.title.setTextFormat(Qt.TextFormat.PlainText)
        self.title.setStyleSheet("font-weight: 600; color: #4e342e;")
        style = self.style()
        self._icons = {"play": style.standardIcon(QStyle.StandardPixmap.SP_MediaPlay),
                       "pause": style.standardIcon(QStyle.StandardPixmap.SP_MediaPause)}
        self.back = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_MediaSkipBackward), "")
        self.back.setToolTip("Previous message")
        self.play = QPushButton(self._icons["play"], "")
        self.play.setToolTip("Play / pause (Space)")
        self.play.setShortcut(Qt.Key.Key_Space)
        self.forward = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_MediaSkipForward), "")
        self.forward.setToolTip("Next message")
        for button in (self.back, self.play, self.forward):
            button.setFixedWidth(38)
        self.speed = QComboBox()
        for label, _ in SPEEDS:
            self.speed.addItem(label)
        self.clock = QLabel("")
        self.clock.setStyleSheet("font-family: monospace; color: #4e342e;")
        self.filter = QLineEdit(placeholderText="play only messages matching…")
        self.filter.setFixedWidth(220)
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self._filter_changed)
        self.devices = QPushButton("Devices…")
        self.devices.clicked.connect(self.devices_requested)
        self.live = QPushButton("Back to live")
        self.live.clicked.connect(self.back_to_live)
        self.strip = DensityStrip()
        self.slider = TimelineSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, SLIDER_STEPS)
        self.start_label = QLabel("")
        self.end_label = QLabel("")
        for label in (self.start_label, self.end_label):
            label.setStyleSheet("color: #6d4c41;")
        self._seek_timer = QTimer(self, singleShot=True, interval=60, timeout=self._seek_to_slider)

        top = QHBoxLayout()
        for widget in (self.badge, self.title):
            top.addWidget(widget)
        top.addStretch(1)
        for widget in (self.back, self.play, self.forward, self.speed, self.clock, self.filter, self.devices,
                       self.live):
            top.addWidget(widget)
        timeline = QVBoxLayout()
        timeline.setSpacing(0)
        timeline.addWidget(self.strip)
        timeline.addWidget(self.slider)
        bottom = QHBoxLayout()
        bottom.addWidget(self.start_label)
        bottom.addLayout(timeline, 1)
        bottom.addWidget(self.end_label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.addLayout(top)
        layout.addLayout(bottom)

        self.back.clicked.connect(lambda: self.controller and self.controller.step_back())
        self.forward.clicked.connect(lambda: self.controller and self.controller.step_forward())
        self.play.clicked.connect(lambda: self.controller and self.controller.toggle())
        self.speed.currentIndexChanged.connect(
            lambda i: self.controller and self.controller.set_speed(SPEEDS[i][1]))
        self.slider.sliderMoved.connect(lambda _: self._seek_timer.start())
        self.slider.sliderReleased.connect(self._seek_to_slider)
        self.slider.jumped.connect(lambda _: self._seek_to_slider())
        self.strip.clicked_at.connect(self._seek_to_fraction)

    def attach(self, controller: ReplayController, title: str, density: list[float]) -> None:
        """Drive ``controller`` from this bar (replacing any previous one); ``density``: messages
        per time bin over the session (`ReplaySource.density`)."""
        self.controller = controller
        source = controller.source
        self.title.setText(title)
        self.start_label.setText(utc_text(source.start))
        self.end_label.setText(utc_text(source.end))
        self.strip.set_density(density)
        self._seek_timer.stop()  # a drag over the previous session's timeline does not seek this one
        self.slider.blockSignals(True)
        self.slider.setSliderDown(False)
        self.slider.blockSignals(False)
        self._filter_changed(self.filter.text())  # the filter typed applies to this session too
        controller.moved.connect(self._moved)
        controller.playing_changed.connect(lambda on: self.play.setIcon(self._icons["pause" if on else "play"]))
        controller.set_speed(SPEEDS[self.speed.currentIndex()][1])
        self.play.setIcon(self._icons["play"])
        self._moved(controller.t)

    def _filter_changed(self, text: str) -> None:
        if self.controller is None:
            return
        if not text.strip():
            self.controller.where = None
            self.filter.setStyleSheet("")
            self.filter.setToolTip("")
            return
        try:
            self.controller.where = compile_filter(text)
        except FilterError as exc:
            self.filter.setStyleSheet("color: #b71c1c;")
            self.filter.setToolTip(str(exc))
            return
        self.filter.setStyleSheet("")
        self.filter.setToolTip("")

    def _fraction(self, t: float) -> float:
        source = self.controller.source  # type: ignore[union-attr]
        span = source.end - source.start
        return 0.0 if span <= 0 else (t - source.start) / span

    def _moved(self, t: float) -> None:
        fraction = self._fraction(t)
        self.clock.setText(utc_text(t) + " UTC")
        self.strip.set_position(fraction)
        if not self.slider.isSliderDown():
            self.slider.blockSignals(True)
            self.slider.setValue(round(fraction * SLIDER_STEPS))
            self.slider.blockSignals(False)

    def _seek_to_fraction(self, fraction: float) -> None:
        if self.controller is not None:
            source = self.controller.source
            self.controller.seek(source.start + fraction * (source.end - source.start))

    def _seek_to_slider(self) -> None:
        if self.controller is not None:
            source = self.controller.source
            self.controller.seek(source.start + self.slider.value() / SLIDER_STEPS * (source.end - source.start))
