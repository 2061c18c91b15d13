"""Logging that a flood of bad clients cannot turn into a flood of lines.

1,100 slow connections under ``ulimit -n 1024`` once produced 600,000 log lines in 90 s
("socket.accept() out of system resource" and per-request errors). `RateLimitFilter` lets the
first few records of each kind through per window and folds the rest into a count carried by
the next record of that kind that gets through.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

#: Loggers a hostile client can make write: asyncio's accept loop, aiohttp's protocol, ours.
GUARDED_LOGGERS = ("asyncio", "aiohttp.server", "aiohttp.web", "app.server.listener", "app.server.connections")


@dataclass(slots=True)
class _Kind:
    started: float
    passed: int = 0
    suppressed: int = 0


class RateLimitFilter(logging.Filter):
    """At most ``burst`` records of one kind (logger + start of the message) per ``window`` s."""

    def __init__(self, burst: int = 5, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.burst, self.window, self.clock = burst, window, clock
        self._kinds: dict[tuple[str, str], _Kind] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg)[:60])
        now = self.clock()
        kind = self._kinds.get(key)
        if kind is None or now - kind.started >= self.window:
            if len(self._kinds) > 1000:  # many kinds: forget the old ones
                self._kinds = {k: v for k, v in self._kinds.items() if now - v.started < self.window}
            suppressed = kind.suppressed if kind is not None else 0
            kind = self._kinds[key] = _Kind(now)
            if suppressed:
                record.msg = f"{record.msg} [{suppressed} similar messages suppressed]"
        kind.passed += 1
        if kind.passed <= self.burst:
            return True
        kind.suppressed += 1
        return False


_FILTER = RateLimitFilter()


def install() -> None:
    """Rate-limit the loggers in GUARDED_LOGGERS (idempotent)."""
    for name in GUARDED_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
