"""Hold off full garbage collections while a large batch is alive.

Parsing a 64 MiB batch creates ~100,000 messages; CPython then runs full (generation 2)
collections every few hundred thousand allocations, each walking every tracked object in the
process with the GIL held: 50-90 ms stalls of the event loop, measured in
benchmarks/hostile.py. While any large batch is being parsed, recorded and released, the oldest
generation's threshold is raised out of reach; young collections still run, and the previous
thresholds come back once the last large batch is gone (its objects freed by then, so the next
full collection has nothing extra to walk).
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()
_holders = 0
_saved: tuple[int, int, int] | None = None


def hold() -> None:
    """Start holding off full collections (nests; thread-safe)."""
    global _holders, _saved
    with _lock:
        if _holders == 0:
            _saved = gc.get_threshold()
            young, middle, _oldest = _saved
            if young:  # a threshold of 0 means automatic collection is off: leave it so
                gc.set_threshold(young, middle, 1 << 30)
        _holders += 1


def release() -> None:
    """End one `hold`; the last one restores the thresholds."""
    global _holders, _saved
    with _lock:
        _holders -= 1
        if _holders == 0 and _saved is not None:
            gc.set_threshold(*_saved)
            _saved = None
