"""The live fleet's frames, from the process that folds them to the window's views.

The recorder's deriver process folds the session being recorded (`store/live_fold`); its frames
arrive on a reader thread, are unpickled there (plain data, no Qt) and handed to the GUI thread
(`ThreadBridge`), where they go into the window's `MirrorFleet`. What the window decides about the
fold — the selected device, the health thresholds — goes back to that process through the recorder.
"""

from __future__ import annotations

import pickle
import sqlite3
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from app.core.fleet_frames import Frame, MirrorFleet
from app.core.health import HealthThresholds
from app.store.recorder import Recorder
from app.store.stored_params import StoredParams
from app.ui.thread_bridge import ThreadBridge


class LiveFeed:
    """Made on the GUI thread before the recorder (whose ``on_frame`` is `receive`), then `attach`ed."""

    def __init__(self, fleet: MirrorFleet, reader: Callable[[], sqlite3.Connection],
                 release: Callable[[list[Any]], None], health_arrived: Callable[[], None]) -> None:
        self.fleet = fleet
        self._health_arrived = health_arrived  # the selected device's full report came: show it
        self.params = StoredParams(reader)  # logged messages' parameters, when asked for
        self._release = release  # frees what a restarted fold or a new session let go of, in slices
        self._bridge = ThreadBridge(self._take)
        self.recorder: Recorder | None = None
        self.frames = 0  # taken in (tests and benchmarks wait on it)

    def attach(self, recorder: Recorder, thresholds: HealthThresholds) -> None:
        """Fold what ``recorder`` records, judged by ``thresholds``."""
        self.recorder = recorder
        self.set_thresholds(thresholds)

    def receive(self, data: bytes) -> None:
        """The frame reader thread: one frame's bytes."""
        self._bridge.send(pickle.loads(data))

    def _take(self, frame: Frame) -> None:
        recorder = self.recorder
        held = self.fleet.apply_frame(frame, self.params, recorder.session_id if recorder is not None else None)
        if held is not None:
            self.frames += 1
            if held:
                self._release(held)
            if frame[-1] is not None:
                self._health_arrived()

    def caught_up(self) -> bool:
        """Whether the views have every batch committed so far (read from the file)."""
        newest = self.params.newest_batch()
        return newest is not None and self.fleet.folded >= newest

    def start(self, session_id: int) -> list[Any]:
        """Show ``session_id`` (just started) from now on; what the views showed, to be freed."""
        return self.fleet.start(session_id)

    def select(self, ident: str | None) -> None:
        """``ident``'s parameters and full health report come with the frames from now on."""
        if self.recorder is not None:
            self.recorder.fold_command("select", ident)

    def set_thresholds(self, thresholds: HealthThresholds) -> None:
        """Health judged by ``thresholds`` from now on, in the fold and in the views."""
        self.fleet.health.set_thresholds(thresholds)
        if self.recorder is not None:
            self.recorder.fold_command("thresholds", asdict(thresholds))
