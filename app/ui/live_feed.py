"""The live fleet's frames, from the process that folds them to the window's views.

The recorder's deriver process folds the session being recorded (`store/live_fold`); its frames
arrive on a reader thread, are unpickled there (plain data, no Qt) and handed to the GUI thread
(`ThreadBridge`), where they go into the window's `MirrorFleet`. What the window decides about the
fold — the selected device, the health thresholds, the trail length — goes back to that process
through the recorder.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from app.core.fleet_frames import Frame, MirrorFleet
from app.core.health import HealthThresholds
from app.store.recorder import Recorder
from app.store.stored_params import StoredParams
from app.ui.thread_bridge import ThreadBridge


class FrameReceiver:
    """The recorder's ``on_frame``, called on the frame reader thread: unpickles there and hands
    the frame on through a `ThreadBridge` (a weak reference): the thread never holds the window."""

    __slots__ = ("_bridge",)

    def __init__(self, bridge: ThreadBridge) -> None:
        self._bridge = bridge

    def __call__(self, data: bytes) -> None:
        self._bridge.send(pickle.loads(data))


class LiveFeed:
    """Made on the GUI thread before the recorder (whose ``on_frame`` is `receiver`), then `attach`ed.
    ``release`` frees what the views let go of in slices; ``restarted`` is told when the mirror
    started over by itself (the recorder moved to another file or session, or its deriver was
    started again), so the views show it afresh; ``health_arrived`` when the selected device's
    full health report came."""

    def __init__(self, fleet: MirrorFleet, release: Callable[[list[Any]], None], restarted: Callable[[], None],
                 health_arrived: Callable[[], None]) -> None:
        self.fleet = fleet
        self._release = release
        self._restarted = restarted
        self._health_arrived = health_arrived
        self.receiver = FrameReceiver(ThreadBridge(self._take))
        self.recorder: Recorder | None = None
        self._params: StoredParams | None = None  # logged messages' parameters, of the current file
        self._generation = -1
        self.frames = 0  # taken in (tests and benchmarks wait on it)

    def attach(self, recorder: Recorder, thresholds: HealthThresholds, trail_length: int) -> None:
        """Fold what ``recorder`` records, judged by ``thresholds``."""
        self.recorder = recorder
        self.set_thresholds(thresholds)
        self.set_trail_length(trail_length)

    @property
    def params(self) -> StoredParams:
        """Where logged messages' parameters are read: the file being recorded now. After the
        recorder moved to another file, rows made before read nothing (`StoredParams.retire`)."""
        recorder = self.recorder
        assert recorder is not None
        if self._params is None or recorder.file_generation != self._generation:
            if self._params is not None:
                self._params.retire()
            generation = recorder.file_generation  # before the identity: a move between is seen next time
            self._params = StoredParams(Path(recorder.path), recorder.file_identity)
            self._generation = generation
        return self._params

    def _take(self, frame: Frame) -> None:
        recorder = self.recorder
        if recorder is None:
            return
        held = self.fleet.apply_frame(frame, self.params, recorder.session_id)
        if held is None:
            return
        self.frames += 1
        if held:  # the mirror started over by itself
            self._release(held)
            self._restarted()
        if frame[-1] is not None:
            self._health_arrived()

    def caught_up(self) -> bool:
        """Whether the views have every batch committed so far (read from the file)."""
        if self.recorder is None:
            return False
        newest = self.params.newest_batch()
        return newest is not None and self.fleet.folded >= newest

    def waiting(self) -> tuple[int, float | None]:
        """Messages of the session being recorded that the views do not show yet, and when the
        oldest of them was received (`core.view_lag`)."""
        recorder = self.recorder
        if recorder is None or recorder.session_id is None or self.fleet.session_id != recorder.session_id:
            return 0, None
        return self.params.waiting(self.fleet.folded, recorder.session_id)

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

    def set_trail_length(self, length: int) -> None:
        """Trails of ``length`` positions: the fold keeps as many for the frames to carry."""
        self.fleet.set_trail_length(length)
        if self.recorder is not None:
            self.recorder.fold_command("trail", length)

    def close(self) -> None:
        """The window is closing: frames still on their way are dropped."""
        self.recorder = None
        if self._params is not None:
            self._params.retire()
