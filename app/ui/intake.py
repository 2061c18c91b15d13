"""Fold committed batches into the live fleet off the acknowledgement's path, in short slices.

Folding a batch into the fleet — health checks, state, trails, log — is ~10 µs per message on
the GUI thread. Done inside the listener's batch callback (as it was), that time sat between the
commit and the 200, so a stream posting one request at a time (flespi) waited for the window's
bookkeeping before it could send the next batch, and a `GET /status` arriving meanwhile waited
behind the whole fold. Now a committed batch is only queued here (O(1), in the callback); a task
folds the queue in slices of at most ``slice_size`` messages (~5 ms each) with the loop free in
between, so the stream's next request and any `/status` are served between two slices, and the
fold runs while the recorder's writer thread commits the next batch (SQLite and zstd release the
GIL). Order is kept: batches are folded in the order they were committed.

Bounded: when more than ``max_waiting`` messages wait (the window cannot keep up with the
stream), `add` folds the oldest down to that bound before it returns — the listener's answer then
waits, which slows the stream to the window's pace, as before, instead of growing memory.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from app.core.normalize import Message

#: Messages folded in one go: ~5 ms of fleet work at the measured ~10 µs per message (most of
#: it health checks), so a request arriving meanwhile waits about that long.
SLICE_SIZE = 500
#: Messages that may wait to be folded before `add` folds them itself (and the sender waits).
MAX_WAITING = 20_000

Apply = Callable[[list[Message], float, "int | None", list[int]], None]


@dataclass(slots=True)
class _Batch:
    messages: list[Message]
    received_at: float
    batch_id: int | None
    indexes: list[int]
    done: int = 0  # messages of this batch already folded


class SlicedIntake:
    """Applies batches in arrival order through ``apply(messages, received_at, batch_id, indexes)``."""

    def __init__(self, apply: Apply, slice_size: int = SLICE_SIZE, max_waiting: int = MAX_WAITING) -> None:
        self._apply = apply
        self.slice_size = slice_size
        self.max_waiting = max_waiting
        self._queue: deque[_Batch] = deque()
        self._waiting = 0
        self._task: asyncio.Task | None = None

    @property
    def backlog(self) -> int:
        """Messages received but not yet folded in."""
        return self._waiting

    def add(self, messages: list[Message], received_at: float, batch_id: int | None,
            indexes: list[int] | None = None) -> None:
        """Take a committed batch; ``indexes`` are the messages' positions in the stored batch.
        It is folded soon after (see the module doc), at once only when too much waits."""
        if not messages:
            return
        positions = indexes if indexes is not None else list(range(len(messages)))
        self._queue.append(_Batch(messages, received_at, batch_id, positions))
        self._waiting += len(messages)
        while self._waiting > self.max_waiting:
            self._fold_slice()
        if self._queue and (self._task is None or self._task.done()):
            self._task = asyncio.ensure_future(self._drain())

    def flush(self) -> None:
        """Fold everything waiting now (a frame that must show all that was committed)."""
        while self._queue:
            self._fold_slice()

    def clear(self) -> None:
        """Forget what is waiting (the fleet it was meant for was cleared)."""
        self._queue.clear()
        self._waiting = 0

    def _fold_slice(self) -> None:
        """Fold the next slice of the oldest batch."""
        batch = self._queue[0]
        start, end = batch.done, min(batch.done + self.slice_size, len(batch.messages))
        if start == 0 and end == len(batch.messages):
            part, positions = batch.messages, batch.indexes
        else:
            part, positions = batch.messages[start:end], batch.indexes[start:end]
        batch.done = end
        if end == len(batch.messages):
            self._queue.popleft()
        self._waiting -= end - start
        self._apply(part, batch.received_at, batch.batch_id, positions)

    async def _drain(self) -> None:
        while self._queue:
            self._fold_slice()
            await asyncio.sleep(0)

    async def close(self) -> None:
        """Stop draining (the window is shutting down)."""
        self.clear()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
