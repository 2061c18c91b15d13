"""The window's live fleet, folded in a deriver process of its own (`store/deriver`, ``--fold``)
and sent as frames.

That child reads every committed batch of the live session and normalizes it; here its messages
are folded into a `Fleet` (state, trails, log, health checks) and what changed goes to the window
a few times a second as a `core.fleet_frames` frame on the child's standard output (4-byte
length, then a pickle). The track chunks are another child's work, at a lower priority. So the
window's process normalizes and checks nothing per message, and the two cores share the work: the
window answers the stream and draws, this process folds.

Commands from the window, one line each on the child's standard input (`DeriverProcess.send`):
``session <id>`` (fold that session from its first batch; the window shows it from now on),
``select <json ident or null>`` (that device's parameters and full health report travel with
the frames), ``thresholds <json>`` (judge health by these), ``trail <positions>`` (the window's
trail length: a frame carries up to as many new positions per device).
"""

from __future__ import annotations

import gc
import os
import pickle
import queue
import sqlite3
import threading
import time
from typing import IO, Any

import orjson

from app.core.fleet import Fleet
from app.core.fleet_frames import FrameBuilder
from app.core.health import HealthThresholds
from app.core.normalize import Message

#: Frames at most this often (the window's frame timer runs at 10 per second under load).
FRAME_SECONDS = 0.1
#: ... and this often while the fold is behind the recording (a backlog): each frame costs both
#: processes per device and per log row it carries, and the window's log keeps only the newest
#: rows, so fewer, fuller frames take the backlog in sooner (benchmarks/gui_backlog.py, alternated:
#: 43,000–46,200 → 48,700–55,500 msg/s with frames ~1 s apart instead of ~0.5 s). A command from the
#: window (a device selected) sends a frame at once all the same.
FRAME_SECONDS_BEHIND = 1.0
#: Log entries kept between two frames (the window's log window: a frame never needs more).
LOG_SIZE = 20_000
#: The child's collector: a young pass every this many allocations, older ones every 20 and 100
#: of those, what exists at start-up frozen. At CPython's 700 the collector was most of this
#: process's overhead: it holds a thousand devices' state and a 20,000-message log, which every
#: older pass walks again (benchmarks/gui_backlog.py: 24.7–26.0 → 16–22 µs per message). 200,000
#: rather than 50,000 halved the collector's time again (0.15 → 0.08 s over a 200,000-message backlog).
GC_YOUNG = 200_000


def tune_collector() -> None:
    """Collect as rarely as a process holding a fleet can afford (see `GC_YOUNG`)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG, 20, 100)


def encode_command(name: str, value: Any) -> bytes:
    """One command line for the child (the value as JSON: an ident may hold any character)."""
    return name.encode() + b" " + orjson.dumps(value) + b"\n"


class LiveFold:
    """Folds the live session's batches and writes frames to ``out`` from a thread of its own (a
    write waits for the window to read; meanwhile the changes gather for the next frame)."""

    def __init__(self, out: IO[bytes], session_id: int, after: int) -> None:
        self.out = out
        self.thresholds = HealthThresholds()
        self.fleet = Fleet(log_size=LOG_SIZE, health=self.thresholds)  # trail length: the window's command
        self.builder = FrameBuilder(self.fleet, session_id, os.getpid())
        self.last = after  # the newest batch folded (or known not to be the session's)
        self._last_frame = 0.0
        self._sent_last = -1
        self._announce = False  # a session started: a frame goes even with nothing in it
        self._pending: queue.Queue[bytes | None] = queue.Queue(maxsize=1)
        self._writer = threading.Thread(target=self._write_frames, name="trackmon-frames", daemon=True)
        self._writer.start()

    @property
    def session_id(self) -> int:
        return self.builder.session_id

    def fold(self, session_id: int, batch_id: int, received_at: float, messages: list[Message]) -> None:
        """Take one committed batch in (those of other sessions only move the cursor)."""
        if session_id == self.session_id:
            self.fleet.apply(messages, received_at, batch_id)
        self.last = batch_id

    def command(self, line: bytes, conn: sqlite3.Connection) -> None:
        """Carry out one command line from the window (see the module's doc)."""
        name, _, value = line.strip().partition(b" ")
        if name == b"select":
            self.builder.select(orjson.loads(value))
        elif name == b"thresholds":
            self.thresholds = HealthThresholds(**orjson.loads(value))
            self.fleet.health.set_thresholds(self.thresholds)
            self.builder.resend_health = True
        elif name == b"trail":
            self.fleet.set_trail_length(max(1, int(orjson.loads(value))))
        elif name == b"session":
            self.start(int(orjson.loads(value)), conn)

    def start(self, session_id: int, conn: sqlite3.Connection) -> None:
        """Fold ``session_id`` from its first batch, in a fresh fleet."""
        self.fleet.clear()
        self.builder.forget(session_id)
        first = conn.execute("SELECT min(id) FROM batches WHERE session_id = ?", (session_id,)).fetchone()[0]
        # No batch yet: any of it comes after the newest batch there is now.
        self.last = first - 1 if first is not None else conn.execute(
            "SELECT coalesce(max(id), 0) FROM batches").fetchone()[0]
        self._last_frame = 0.0
        self._announce = True
        self.send(now=True)  # the window learns the new session is folded (or with the next frame that goes)

    def send(self, now: bool = False, behind: bool = False) -> bool:
        """Send what changed, at most every `FRAME_SECONDS` (`FRAME_SECONDS_BEHIND` while the fold
        is ``behind``) unless ``now``; never while the last frame is still on its way. A frame goes
        even with nothing changed when the fold moved on (the window learns how far it is) or a
        session was started (`start`). False if it had to wait (the caller asks again)."""
        clock = time.monotonic()
        interval = FRAME_SECONDS_BEHIND if behind else FRAME_SECONDS
        if (not now and clock - self._last_frame < interval) or self._pending.unfinished_tasks:
            return False
        frames = self.builder.build(self.last, LOG_SIZE)
        if not frames:
            if not self._announce and self.last == self._sent_last:
                return True
            frames = [self.builder.empty(self.last)]  # nothing new to show: how far the fold is
        self._last_frame, self._sent_last, self._announce = clock, self.last, False
        parts = [pickle.dumps(frame, protocol=5) for frame in frames]
        self._pending.put(b"".join(len(part).to_bytes(4, "little") + part for part in parts))
        return True

    def close(self) -> None:
        """Let the last frame go, then stop writing."""
        self._pending.join()
        self._pending.put(None)
        self._writer.join(5.0)

    def _write_frames(self) -> None:
        while (frames := self._pending.get()) is not None:
            try:
                self.out.write(frames)
                self.out.flush()
            except (OSError, ValueError):  # the window is gone: its stdin end stops this process
                pass
            finally:
                self._pending.task_done()
        self._pending.task_done()
