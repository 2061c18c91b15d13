"""Feeds changed devices to the map page with back-pressure: one JS call per slice, one in flight.

Why: the window produces a frame of changes ten times a second, but a software-rendered page can
take longer than that to draw a slice of a thousand moving markers. Sent blindly, the calls queue
up inside the page (tens of seconds of them at 2,000 msg/s), and anything the user asks for — *Fit
all*, a selection — runs only after that queue (the issue measured *Fit all* ignored for ~90 s).
Here changed device ids wait in Python, coalesced (a device that changed five times is sent once,
as it is now), and the next slice is sent only when the page has run the previous one, and no
sooner than two frames (200 ms) after it: every call makes the page lay out and draw again, and a
page drawing flat out takes the CPU the listener needs (20 devices at 2,000 msg/s: QtWebEngine
0.33–0.34 of a core at 100 ms, 0.18 at 200 ms, benchmarks/gui_everyday.py; five map updates a
second are plenty for trackers reporting every second or slower). While more devices wait than
one slice carries (a backlog: every device moves every frame), the gap is ``busy_gap_s`` (400 ms): the
software-drawn page took 0.7–0.9 of a core at 100 ms and ~0.2 at 400 ms, and on two cores that
core is what the window's own process needs to take the backlog in (benchmarks/gui_backlog.py:
+20–35 % messages/s). Measured again once the page's calls stopped growing with the trails
(docs/benchmarks.md, 2026-12-06): a 200 ms gap cost 4 % of messages/s and QtWebEngine 0.43–0.46
of a core against 0.27–0.32 at 400 ms, so 400 ms stays. Calls that are not updates go straight to
the page and so run after at most one slice.

While the views are catching up with the recording (a backlog: `core.view_lag.catching_up`), the
gap is ``catching_up_gap_s`` (1 s): what the map would draw is a moment long past, soon replaced,
and the page's cost goes with the devices it updates (~0.4 ms of QtWebEngine's CPU each, whether
250 or 1,000 to a call). At 400 ms QtWebEngine took 4.5–8.4 µs per message of a 1,000-device
backlog, at 1 s 2.5–4.1 (benchmarks/gui_backlog.py, docs/benchmarks.md 2026-12-07): CPU the fold needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from PySide6.QtCore import QTimer
from shiboken6 import isValid

from app.ui.map_view import MapView

SLICE = 250  # devices per JavaScript call
MIN_GAP_S = 0.2  # at most one update call per two frames: each call makes the page lay out and draw again
BUSY_GAP_S = 0.4  # between update calls while more than a slice of devices waits (see the module doc)
CATCHING_UP_GAP_S = 1.0  # between update calls while the views are behind the recording (see the module doc)
STALLED_S = 10.0  # an answer this late is taken as lost (a page reload drops its callbacks)


class MapFeed:
    """Sends the devices that changed, sliced and paced by the page's answers."""

    def __init__(self, view: MapView, payload: Callable[[str], list[Any] | None], slice_size: int = SLICE,
                 limit: int | None = 1, min_gap_s: float = MIN_GAP_S, busy_gap_s: float = BUSY_GAP_S,
                 catching_up_gap_s: float = CATCHING_UP_GAP_S) -> None:
        self.view = view
        self.min_gap_s = min_gap_s
        self.busy_gap_s = busy_gap_s
        self.catching_up_gap_s = catching_up_gap_s
        self._catching_up = False  # the views are behind the recording: the window says so each second
        self._busy = False  # the last update call left a slice waiting
        self.limit = limit  # calls outstanding at most; None: send at once (how it was: benchmarks compare)
        self.payload = payload  # the device's row for the page, computed when it is sent
        self.slice_size = slice_size
        self.pending: dict[str, None] = {}  # insertion-ordered set of ids waiting to be sent
        self.in_flight = 0  # update calls sent and not answered yet
        self.max_in_flight = 0  # the most ever outstanding: what tests check
        self.sent_calls = 0
        self._sent_at = 0.0
        self._timer_armed = False
        self._visible: frozenset[str] | None = None

    def push(self, idents: Iterable[str]) -> None:
        """Send these devices' current state (now, or after the slice the page is running)."""
        pending = self.pending
        for ident in idents:
            pending[ident] = None
        self.pump()

    def pump(self) -> None:
        """Send the next slice if the page is ready and has answered the previous one."""
        if not self.view.is_ready:
            return
        now = time.monotonic()
        if self.in_flight and now - self._sent_at >= STALLED_S:
            self.in_flight = 0  # the answer was lost
        wait = self._sent_at + self.gap() - now
        if self.limit is not None and self.pending and not self.in_flight and wait > 0:
            if not self._timer_armed:  # the page was quick: the next slice goes at the next frame's time
                self._timer_armed = True
                QTimer.singleShot(max(1, round(wait * 1000)), self._timer_fired)
            return
        while self.pending and (self.limit is None or self.in_flight < self.limit):
            ids = list(self.pending)[:self.slice_size]
            for ident in ids:
                del self.pending[ident]
            rows = [row for ident in ids if (row := self.payload(ident)) is not None]
            if rows:
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                self._sent_at = time.monotonic()
                self.sent_calls += 1
                self._busy = len(self.pending) >= self.slice_size
                self.view.call_then("updatePacked", (rows,), self._answered)

    @property
    def catching_up(self) -> bool:
        return self._catching_up

    @catching_up.setter
    def catching_up(self, value: bool) -> None:
        was, self._catching_up = self._catching_up, value
        if was and not value and self._timer_armed:  # a slice waiting out the long gap goes sooner
            self._timer_armed = False
            self.pump()

    def gap(self) -> float:
        """Seconds from one update call to the next, as things stand (see the module doc)."""
        if self._catching_up:
            return self.catching_up_gap_s
        return self.busy_gap_s if self._busy else self.min_gap_s

    def _timer_fired(self) -> None:
        self._timer_armed = False
        if isValid(self.view):
            self.pump()

    def _answered(self, _result: Any) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        if isValid(self.view):  # the answer can come after the window was closed
            self.pump()

    def page_loaded(self) -> None:
        """A (re)loaded page knows nothing: no call is outstanding, the filter is sent again."""
        self.in_flight = 0
        if self._visible is not None:
            self.view.call("setVisible", sorted(self._visible))

    def clear(self) -> None:
        """Forget what waits (the views were reset; everything is pushed again)."""
        self.pending.clear()

    def set_visible(self, idents: Iterable[str] | None) -> None:
        """Show only these devices on the map (the device list's filter), or all (None); sent only
        when the set changed."""
        visible = None if idents is None else frozenset(idents)
        if visible == self._visible:
            return
        self._visible = visible
        self.view.call("setVisible", None if visible is None else sorted(visible))
