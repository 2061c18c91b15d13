"""How often the text views (device table, message log) repaint while data streams in.

The map moves ten times a second, but a table that repaints ten times a second is unreadable and
expensive: painting the device table and the log (software raster, a Python call per cell and
role) was most of the window's loop time at 50 msg/s (see docs/benchmarks.md, "The window at
everyday rates"), and while it paints the listener answers nobody. So frame changes for the text
views are gathered here and handed over at most every ``period`` seconds; nothing is dropped.
"""

from __future__ import annotations

from typing import Any

#: Four repaints a second: still "live" to the eye, a fraction of the cost of ten.
TEXT_VIEW_PERIOD = 0.25


class TextViewPacer:
    """Gathers changed devices and new log entries of one fleet between two text-view updates."""

    def __init__(self, period: float = TEXT_VIEW_PERIOD, log_limit: int | None = None) -> None:
        self.period = period
        self.log_limit = log_limit
        self._fleet: object | None = None
        self._changed: dict[str, None] = {}
        self._entries: list[Any] = []
        self._last = float("-inf")

    def add(self, fleet: object, changed: list[str], entries: list[Any]) -> None:
        """One frame's changes of ``fleet`` (a different fleet than before discards the old one's)."""
        if fleet is not self._fleet:
            self._fleet = fleet
            self._changed.clear()
            self._entries.clear()
        self._changed.update(dict.fromkeys(changed))
        self._entries.extend(entries)
        if self.log_limit is not None and len(self._entries) > self.log_limit:
            del self._entries[:-self.log_limit]

    def clear(self) -> None:
        """Drop what was gathered: the views are being reset (new session, replay seek)."""
        self._changed.clear()
        self._entries.clear()

    def take(self, now: float, *, force: bool = False) -> tuple[list[str], list[Any]]:
        """What the text views should show now: everything gathered once ``period`` has passed
        since the last hand-over (or when forced), else nothing yet."""
        if not force and now - self._last < self.period:
            return [], []
        if not self._changed and not self._entries:
            return [], []
        self._last = now
        changed, self._changed = list(self._changed), {}
        entries, self._entries = self._entries, []
        return changed, entries
