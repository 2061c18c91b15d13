"""Cropping a track in time before export (as GPSPrune does): two handles over the session's
span, kept in step with the From/To fields, and how much of the span is kept."""

from __future__ import annotations

from PySide6.QtCore import QDateTime, Qt, QTimeZone
from PySide6.QtWidgets import QDateTimeEdit, QHBoxLayout, QLabel, QPushButton, QSlider, QVBoxLayout, QWidget

from app.ui.trip_panel import duration_text

STEPS = 1000  # slider resolution over the span


class TimeCrop(QWidget):
    """Start and end sliders bound to ``t_from``/``t_to`` (which stay the source of truth)."""

    def __init__(self, t_from: QDateTimeEdit, t_to: QDateTimeEdit, start: float, end: float,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.t_from, self.t_to = t_from, t_to
        self.start, self.end = start, max(end, start + 1)
        self.from_slider = QSlider(Qt.Orientation.Horizontal, minimum=0, maximum=STEPS, value=0)
        self.to_slider = QSlider(Qt.Orientation.Horizontal, minimum=0, maximum=STEPS, value=STEPS)
        self.from_slider.setToolTip("Crop the start")
        self.to_slider.setToolTip("Crop the end")
        self.kept = QLabel("")
        self.kept.setStyleSheet("color: #607d8b;")
        whole = QPushButton("Whole session")
        whole.clicked.connect(self.reset)
        self.from_slider.valueChanged.connect(lambda v: self._slid(self.t_from, v, self.to_slider, below=True))
        self.to_slider.valueChanged.connect(lambda v: self._slid(self.t_to, v, self.from_slider, below=False))
        for edit in (t_from, t_to):
            edit.dateTimeChanged.connect(lambda _: self._edited())
        fields = QHBoxLayout()
        fields.addWidget(t_from)
        fields.addWidget(QLabel("→"))
        fields.addWidget(t_to)
        fields.addWidget(whole)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(fields)
        layout.addWidget(self.from_slider)
        layout.addWidget(self.to_slider)
        layout.addWidget(self.kept)
        self._edited()

    def _time(self, step: int) -> float:
        return self.start + (self.end - self.start) * step / STEPS

    def _step(self, ts: float) -> int:
        return round((ts - self.start) / (self.end - self.start) * STEPS)

    def _slid(self, edit: QDateTimeEdit, step: int, other: QSlider, *, below: bool) -> None:
        if (below and step > other.value()) or (not below and step < other.value()):
            other.setValue(step)  # the handles never cross
        edit.setDateTime(QDateTime.fromSecsSinceEpoch(int(self._time(step)), QTimeZone.utc()))

    def _edited(self) -> None:
        t0 = float(self.t_from.dateTime().toSecsSinceEpoch())
        t1 = float(self.t_to.dateTime().toSecsSinceEpoch())
        for slider, ts in ((self.from_slider, t0), (self.to_slider, t1)):
            slider.blockSignals(True)
            slider.setValue(max(0, min(STEPS, self._step(ts))))
            slider.blockSignals(False)
        span = self.end - self.start
        kept = max(0.0, min(t1, self.end) - max(t0, self.start))
        self.kept.setText(f"Keeps {duration_text(kept)} of {duration_text(span)} ({kept / span:.0%})" if t1 > t0
                          else "Nothing: 'From' is after 'To'")

    def set_span(self, start: float, end: float) -> None:
        """The session's span became known: the handles cover it, and all of it is kept."""
        self.start, self.end = start, max(end, start + 1)
        self.reset()
        self._edited()

    def reset(self) -> None:
        """The whole session again."""
        self.t_from.setDateTime(QDateTime.fromSecsSinceEpoch(int(self.start), QTimeZone.utc()))
        self.t_to.setDateTime(QDateTime.fromSecsSinceEpoch(int(self.end), QTimeZone.utc()))

    def crop(self, t0: float, t1: float) -> None:
        """Keep only ``t0``..``t1``."""
        self.t_from.setDateTime(QDateTime.fromSecsSinceEpoch(int(t0), QTimeZone.utc()))
        self.t_to.setDateTime(QDateTime.fromSecsSinceEpoch(int(t1), QTimeZone.utc()))
