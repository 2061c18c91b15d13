"""Fold committed batches into the live fleet without holding the event loop.

A flespi stream may send batches of tens of thousands of messages (``limit_messages``, or a
backlog after an outage); folding one into the fleet — health checks, state, trails, log — is
~10 µs per message on the GUI thread, so a 100,000-message batch in one go would stall the
window, its listener and `/status` for a second. Batches up to ``slice_size`` are applied at
once, as before; larger ones (and anything arriving while one is in progress, so order is
kept) are applied a slice at a time with the loop free in between.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from app.core.normalize import Message

#: Messages folded in one go: ~50 ms of fleet work at the measured ~10 µs per message.
SLICE_SIZE = 5000

Apply = Callable[[list[Message], float, "int | None", list[int]], None]


@dataclass(slots=True)
class _Batch:
    messages: list[Message]
    received_at: float
    batch_id: int | None
    indexes: list[int]


class SlicedIntake:
    """Applies batches in arrival order through ``apply(messages, received_at, batch_id, indexes)``."""

    def __init__(self, apply: Apply, slice_size: int = SLICE_SIZE) -> None:
        self._apply = apply
        self.slice_size = slice_size
        self._queue: deque[_Batch] = deque()
        self._task: asyncio.Task | None = None

    @property
    def backlog(self) -> int:
        """Messages received but not yet folded in."""
        return sum(len(batch.messages) for batch in self._queue)

    def add(self, messages: list[Message], received_at: float, batch_id: int | None,
            indexes: list[int] | None = None) -> None:
        """Take a committed batch; ``indexes`` are the messages' positions in the stored batch."""
        positions = indexes if indexes is not None else list(range(len(messages)))
        if not self._queue and len(messages) <= self.slice_size:
            self._apply(messages, received_at, batch_id, positions)
            return
        self._queue.append(_Batch(messages, received_at, batch_id, positions))
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._drain())

    def clear(self) -> None:
        """Forget what is waiting (the fleet it was meant for was cleared)."""
        self._queue.clear()

    async def _drain(self) -> None:
        step = self.slice_size
        while self._queue:
            batch = self._queue[0]
            done = 0
            while done < len(batch.messages):
                if not self._queue or self._queue[0] is not batch:  # cleared meanwhile
                    break
                self._apply(batch.messages[done:done + step], batch.received_at, batch.batch_id,
                            batch.indexes[done:done + step])
                done += step
                await asyncio.sleep(0)
            if self._queue and self._queue[0] is batch:
                self._queue.popleft()

    async def close(self) -> None:
        """Stop draining (the window is shutting down)."""
        self._queue.clear()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
