"""Cyclic garbage collection on the GUI thread only.

Python's cyclic collector runs in whichever thread happens to allocate when a threshold is passed.
If it frees a Qt wrapper there, shiboken runs the C++ destructor off the GUI thread: Qt takes its
own mutex and then waits for the GIL, while the GUI thread holds the GIL and waits for that mutex
— the window freezes for good (seen in the import thread; the recorder's writer and the export
thread could do the same). So the GUI process switches automatic collection off and collects
here, from a timer on the GUI thread: the youngest generation often and cheaply, older ones in
the proportions CPython itself uses, a full collection rarely. Each pass is timed so the cost is
visible (``stats``) and can be checked in benchmarks.

Reference counting still frees most objects at once in whatever thread drops them; that is why
worker threads must also never hold references to Qt objects (see docs/architecture.md).
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, QTimer

log = logging.getLogger(__name__)

#: How often the GUI thread looks at the allocation counters: often, so that a young pass finds
#: what a fraction of a second allocated, not a whole import's worth (the check itself is free).
INTERVAL_MS = 50
#: Young-generation threshold: far above CPython's 700, so a pass happens a few times a second
#: under load rather than thousands of times, and stays short (the young generation is small).
YOUNG_THRESHOLD = 20_000
#: Collections of a generation before the next one is collected too (CPython's default ratios).
OLDER_EVERY = 10
#: A full collection walks every tracked object (hundreds of ms with a 20,000-message log): at
#: most this often.
FULL_EVERY_S = 300.0


@dataclass(slots=True)
class CollectionStats:
    """What collection has cost so far, for benchmarks and the soak test."""

    passes: list[int] = field(default_factory=lambda: [0, 0, 0])
    worst_ms: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    total_ms: float = 0.0
    collected: int = 0


class GuiGarbageCollector(QObject):
    """Owns cyclic garbage collection for the process while it lives (one per application)."""

    def __init__(self, parent: QObject | None = None, *, interval_ms: int = INTERVAL_MS) -> None:
        super().__init__(parent)
        self.stats = CollectionStats()
        self._young_passes = 0
        self._middle_passes = 0
        self._last_full = time.monotonic()
        gc.collect()
        gc.freeze()  # what exists after start-up lives for the whole run: never walk it again
        gc.disable()
        self._timer = QTimer(self, interval=interval_ms, timeout=self.check)
        self._timer.start()

    def check(self) -> None:
        """Collect whatever generation is due (called by the timer on the GUI thread)."""
        young = gc.get_count()[0]
        if young < YOUNG_THRESHOLD:
            return
        generation = 0
        self._young_passes += 1
        if self._young_passes >= OLDER_EVERY:
            self._young_passes = 0
            generation = 1
            self._middle_passes += 1
            if self._middle_passes >= OLDER_EVERY and time.monotonic() - self._last_full >= FULL_EVERY_S:
                self._middle_passes = 0
                generation = 2
        self.collect(generation)

    def collect(self, generation: int = 2) -> int:
        """Collect ``generation`` now, on this (the GUI) thread; returns objects found unreachable."""
        started = time.perf_counter()
        found = gc.collect(generation)
        elapsed = (time.perf_counter() - started) * 1000.0
        stats = self.stats
        stats.passes[generation] += 1
        stats.worst_ms[generation] = max(stats.worst_ms[generation], elapsed)
        stats.total_ms += elapsed
        stats.collected += found
        if generation == 2:
            self._last_full = time.monotonic()
            log.debug("full garbage collection: %d objects in %.1f ms", found, elapsed)
        return found

    def stop(self) -> None:
        """Hand collection back to Python (tests, shutdown)."""
        self._timer.stop()
        gc.enable()
