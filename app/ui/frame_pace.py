"""How often the views are redrawn: at everyday rates a few times a second is what a person can
follow, while each redraw (table rows, the log scrolled, a JavaScript call and a compositor pass
for the map) costs the same whether it shows one message or fifty. Measured with the demo feed
(benchmarks/demo_cpu.py): 10 frames/s → 4 frames/s roughly halved the window's CPU. Under load
(a backlog, thousands of msg/s) frames stay at the timer's full rate so each one stays small."""

from __future__ import annotations

QUIET_INTERVAL = 0.25  # seconds between frames while little arrives
BUSY = 50  # messages or requests waiting: render at the timer's rate


class FramePace:
    """Decides, at each frame-timer tick, whether a frame is due."""

    def __init__(self, quiet_interval: float = QUIET_INTERVAL, busy: int = BUSY) -> None:
        self.quiet_interval = quiet_interval
        self.busy = busy
        self._last_at = float("-inf")
        self._last_total = 0

    def due(self, now: float, total: int, requests: int) -> bool:
        """Whether to render now, given the fleet's message total and the requests waiting."""
        waiting = total - self._last_total
        if waiting < 0 or waiting >= self.busy or requests >= self.busy or now - self._last_at >= self.quiet_interval:
            self._last_at, self._last_total = now, total
            return True
        return False
