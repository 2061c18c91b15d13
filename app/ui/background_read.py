"""Read the recording file off the GUI thread, newest request first.

Reads that can take long on a large file that is being written — the session list's counts over
every batch, a replay seek reading the latest batches of hundreds of devices — froze the window for
up to 2.4 s in the 30-minute soak when they ran on the GUI thread with a cold page cache. Here each
read runs in a worker thread with its own read-only connection (one snapshot, closed after the
read; opened there too, as `Recorder.open_reader` may wait for the recorder to move to a file put
at the path), and its result comes back as plain data on the GUI thread through a `ThreadBridge`.

One read runs at a time. A request made while one runs replaces any request still waiting, so a
slider dragged across a recording costs one read after the one in flight, not one per step.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from contextlib import closing
from typing import Any

from app.server.error_words import plain
from app.ui.thread_bridge import ThreadBridge

#: A read: plain data in (bound with functools.partial, never a Qt object), plain data out.
ReadJob = Callable[[sqlite3.Connection], Any]
#: Opens the read-only connection a read runs on, in the worker thread (`Recorder.open_reader`,
#: or `schema.connect` expecting one file); may raise, which fails the read with its words.
Opener = Callable[[], sqlite3.Connection]


class BackgroundRead:
    """Runs `ReadJob`s on a connection from ``opener`` in a worker thread; ``deliver(result)`` or
    ``fail(error)`` is called on the GUI thread for each read that ran and was not dropped."""

    def __init__(self, opener: Opener, deliver: Callable[[Any], None], fail: Callable[[str], None],
                 name: str) -> None:
        self._opener = opener
        self._deliver = deliver
        self._fail = fail
        self._name = name
        self._bridge = ThreadBridge(self._finished)
        self._waiting: ReadJob | None = None
        self._running: int | None = None  # the generation of the read running, if one is
        self._generation = 0  # moves on when reads are dropped: their results are then ignored

    @property
    def busy(self) -> bool:
        """A read whose result will be delivered is running or waiting."""
        return self._running == self._generation or self._waiting is not None

    def request(self, job: ReadJob) -> None:
        """Run ``job`` soon; a job still waiting behind the running one is dropped for it."""
        self._waiting = job
        if self._running is None:
            self._start_next()

    def drop(self) -> None:
        """Forget the waiting job and ignore the running one's result (requests may follow)."""
        self._waiting = None
        self._generation += 1

    def _start_next(self) -> None:
        job, self._waiting = self._waiting, None
        if job is None:
            return
        self._running = self._generation
        try:
            threading.Thread(target=_run, args=(self._opener, job, self._bridge, self._generation),
                             name=self._name, daemon=True).start()
        except RuntimeError as exc:  # no thread to be had (the interpreter is shutting down): said, not stuck busy
            self._running = None
            self._fail(str(exc))

    def _finished(self, generation: int, ok: bool, value: Any) -> None:
        self._running = None
        try:
            if generation == self._generation:
                (self._deliver if ok else self._fail)(value)
        finally:
            self._start_next()


def _run(opener: Opener, job: ReadJob, done: ThreadBridge, generation: int) -> None:
    """In the worker: one read with its own connection; never raises, never touches Qt."""
    try:
        with closing(opener()) as conn:
            result = job(conn)
    except Exception as exc:  # the file went away, is locked, is not a recording: said, not raised
        done.send(generation, False, plain(exc))
    else:
        done.send(generation, True, result)
