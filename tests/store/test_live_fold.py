"""The live fleet folded in the deriver process: what the window's mirror ends up holding, taken
from the child's frames, is what folding the same batches in place gives — state, log, health —
and it follows new sessions, the selected device, new health thresholds and a child started again."""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, fields

import orjson
import psutil
import pytest

from app.core.fleet import Fleet
from app.core.fleet_frames import MirrorFleet, message_name, param_count
from app.core.health import HealthThresholds
from app.core.normalize import Message, normalize_batch
from app.store.deriver import BACKGROUND_NICE
from app.store.faults import RecordingUnavailable
from app.store.recorder import REVIVE_AFTER_S, Recorder
from app.store.stored_params import StoredParams
from tests.store.test_deriver import deriver_children, fleet_batches, track_rows, write_inline, write_keyed

T0 = 1_700_000_100.0


class Frames:
    """The window's side, minus Qt: frames into a mirror, on the reader thread's word."""

    def __init__(self) -> None:
        self.mirror = MirrorFleet()
        self.recorder: Recorder | None = None
        self.lock = threading.Lock()
        self.runs: set[tuple[int, int]] = set()
        self.source: StoredParams | None = None

    def take(self, data: bytes) -> None:
        frame = pickle.loads(data)
        with self.lock:
            self.runs.add(frame[1])
            self.mirror.apply_frame(frame, self.source, self.recorder.session_id)  # type: ignore[arg-type, union-attr]

    def processes(self) -> set[int]:
        """The folding processes frames came from."""
        return {process for process, _ in self.runs}

    def wait(self, done, what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if done(self.mirror):
                    return
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what} (total {self.mirror.total}, runs {self.runs})")


@pytest.fixture
def live(tmp_path) -> Iterator[tuple[Frames, Recorder]]:
    """A recorder whose deriver folds the live fleet, its frames into a mirror; a session started."""
    frames = Frames()
    rec = frames.recorder = Recorder(tmp_path / "live.sqlite", on_frame=frames.take)
    frames.source = StoredParams(tmp_path / "live.sqlite")
    try:
        session = rec.start_session()
        frames.wait(lambda m: m.session_id == session, "the session folded")  # its command taken in
        yield frames, rec
    finally:
        rec.close()


def record(frames: Frames, rec: Recorder, batches: list[bytes], what: str) -> None:
    """Record ``batches`` (received a second apart) and wait until the mirror has all of them."""
    for i, body in enumerate(batches, start=1):
        write_keyed(rec, body, T0 + i)
    count = sum(len(orjson.loads(body)) for body in batches)
    frames.wait(lambda m: m.total == count, what)


def kill_deriver(fold: bool = True) -> int:
    """Kill the live fold's process (or the chunks', out of memory, say) and wait until it has
    exited; its pid."""
    (child,) = deriver_children(fold=fold)
    os.kill(child, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not ended(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    return child


def chunked_once(rec: Recorder) -> int:
    """Close ``rec`` (its chunks' process writes what is left) and count the messages in its
    chunks, each of which must be there once."""
    rec.close()
    assert not deriver_children()
    rows = [(r[1], r[2]) for found in track_rows(rec.path).values() for r in found]
    assert len(rows) == len(set(rows))
    return len(rows)


def ended(pid: int) -> bool:
    """Whether ``pid`` has exited: gone, or a zombie until its parent reaps it — and not only its
    main thread (the others may still be being torn down: until then it cannot be reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in "ZX" and len(os.listdir(f"/proc/{pid}/task")) <= 1
    except OSError:
        return True


def plain(m: Message) -> Message:
    """A logged message as a plain one (every field, the parameters read)."""
    return Message(*(getattr(m, f.name) for f in fields(Message)))


def in_place(batches: list[bytes], thresholds: HealthThresholds | None = None) -> Fleet:
    fleet = Fleet(health=thresholds)
    for i, body in enumerate(batches, start=1):
        fleet.apply(normalize_batch(orjson.loads(body), T0 + i, body), T0 + i, i)
    return fleet


def test_the_mirror_holds_what_folding_in_place_holds(live) -> None:
    frames, rec = live
    batches = fleet_batches(8, 300)
    chosen = orjson.loads(batches[0])[3]["ident"]
    rec.fold_command("select", chosen)
    # Commands reach the folding process over a pipe, batches through the file: the selection is
    # taken in only once its line has been read. Commands are taken in order, so once the session
    # told again has started a new run there, the selection holds for every batch recorded next.
    with frames.lock:
        runs = max(starts for _, starts in frames.runs)
    rec.fold_command("session", rec.session_id)
    frames.wait(lambda m: max(starts for _, starts in frames.runs) > runs, "the selection taken in")
    for i, body in enumerate(batches, start=1):
        write_keyed(rec, body, T0 + i)
    frames.wait(lambda m: m.total == 2_400, "every message folded")
    expected = in_place(batches)
    mirror = frames.mirror
    assert set(mirror.devices) == set(expected.devices)
    for ident, want in expected.devices.items():
        got = mirror.devices[ident]
        assert (got.count, got.flagged, got.name, got.last_seen) == (want.count, want.flagged, want.name,
                                                                    want.last_seen)
        assert got.latest == want.latest and got.previous == want.previous and got.fix == want.fix
        assert list(got.trail) == list(want.trail) and got.trail_total == want.trail_total
        assert got.rate_per_min(T0 + 9) == want.rate_per_min(T0 + 9)
        assert mirror.health.worst(ident) == expected.health.worst(ident)
        assert got.latest_at is not None  # where the inspector reads its raw JSON
    # The log: every message once, in order; what a row shows without reading the file, and
    # every parameter when asked (the selected device's came with the frames).
    assert [(e.seq, e.batch_id, e.index) for e in mirror.log] == [(e.seq, e.batch_id, e.index)
                                                                    for e in expected.log]
    for got, want in zip(mirror.log, expected.log, strict=True):
        m = got.message
        assert m.loaded == (m.ident == chosen)
        assert (message_name(m), param_count(m)) == (message_name(want.message), param_count(want.message))
        assert plain(m) == want.message  # reads the parameters
    report = mirror.health.devices[chosen].report()
    assert report == expected.health.devices[chosen].report()
    assert list(mirror.health.devices) == [chosen]  # only the selected device's full report


def test_new_thresholds_and_a_new_session_reach_the_mirror(live) -> None:
    frames, rec = live
    batches = fleet_batches(4, 300, seed=3)
    record(frames, rec, batches, "the first session folded")
    strict = HealthThresholds(jump_kmh=1.0, min_satellites=30)
    rec.fold_command("thresholds", asdict(strict))
    expected = in_place(batches)
    expected.health.set_thresholds(strict)
    frames.wait(lambda m: all(m.health.worst(i) == expected.health.worst(i) for i in expected.devices)
                and any(m.health.worst(i)[0] for i in expected.devices), "every device judged anew")

    second = rec.start_session("second")
    write_keyed(rec, batches[0], T0 + 10)  # the same messages again: re-sent, nothing new
    write_keyed(rec, fleet_batches(1, 50, seed=11)[0], T0 + 11)
    frames.wait(lambda m: m.session_id == second and m.total == 50, "only the new session's messages")
    assert all(e.batch_id > 4 for e in frames.mirror.log)


def test_the_window_folds_in_one_process_and_chunks_in_another_that_gives_way_to_it(live) -> None:
    # During a backlog the fold is what the user waits for; readers read the batches not chunked yet.
    frames, rec = live
    batches = fleet_batches(4, 200, seed=12)
    record(frames, rec, batches, "every batch folded")
    (fold,) = deriver_children(fold=True)
    (chunks,) = deriver_children(fold=False)
    expected = min(19, psutil.Process(fold).nice() + BACKGROUND_NICE)  # it sets it once started up
    deadline = time.monotonic() + 10
    while psutil.Process(chunks).nice() != expected or os.sched_getscheduler(chunks) != os.SCHED_IDLE:
        assert time.monotonic() < deadline, "the chunks' process never gave way"
        time.sleep(0.02)
    assert chunked_once(rec) == 800


def test_a_chunks_process_that_died_is_started_again_and_the_fold_goes_on(live) -> None:
    # Folding the session again would make the window start over; only the dead child is replaced.
    frames, rec = live
    batches = fleet_batches(4, 200, seed=13)
    record(frames, rec, batches[:2], "the first half folded")
    (fold,) = deriver_children(fold=True)
    chunks = kill_deriver(fold=False)
    rec.max_bytes = 1  # and then a write fails (a full disk): the next batch reopens the file
    with pytest.raises(RecordingUnavailable):
        write_keyed(rec, batches[2], T0 + 3)
    rec.max_bytes = None
    for i, body in enumerate(batches[2:], start=3):
        write_keyed(rec, body, T0 + i)  # the reopen, or the next batch, starts it again
    frames.wait(lambda m: m.total == 800, "the second half folded")
    assert rec.deriver_restarts == 1 and deriver_children(fold=True) == [fold]
    assert len(frames.runs) == 2  # not folded again (the first run folded session 0, before the session began)
    (replacement,) = deriver_children(fold=False)
    assert replacement != chunks
    assert chunked_once(rec) == 800


def test_a_child_started_again_folds_the_session_again_from_its_start(live) -> None:
    frames, rec = live
    batches = fleet_batches(6, 200, seed=5)
    record(frames, rec, batches[:3], "the first half folded")
    kill_deriver()
    for i, body in enumerate(batches[3:], start=4):
        write_keyed(rec, body, T0 + i)  # the recorder starts another deriver
    frames.wait(lambda m: m.total == 1_200 and len(frames.processes()) == 2, "the second process's frames")
    expected = in_place(batches)
    assert len(frames.mirror.log) == 1_200  # started over, not doubled
    assert {i: d.count for i, d in frames.mirror.devices.items()} == {i: d.count for i, d in
                                                                       expected.devices.items()}
    assert rec.deriver_restarts == 1


def test_a_child_that_died_is_started_again_without_waiting_for_another_batch(live) -> None:
    # The stream went quiet (or paused) just as the fold died: what was committed is shown again.
    frames, rec = live
    record(frames, rec, fleet_batches(2, 150, seed=6), "both batches folded")
    time.sleep(REVIVE_AFTER_S)  # it did not die young (that one waits for the next batch: no restart loop)
    first = kill_deriver()
    frames.wait(lambda m: m.total == 300 and len(frames.processes()) == 2, "the session folded again")
    assert rec.deriver_restarts == 1 and first not in deriver_children()
    with frames.lock:
        assert len(frames.mirror.log) == 300


def test_a_child_that_dies_young_waits_for_the_next_batch_rather_than_looping(live) -> None:
    frames, rec = live
    rec.revive_after_s = 60.0  # younger than that, however slow the machine: as one that meets a fault at once
    first = kill_deriver()
    time.sleep(0.5)
    assert rec.deriver_restarts == 0 and deriver_children(fold=True) == []  # not started again
    assert first in deriver_children()  # not reaped yet: its command line is gone
    record(frames, rec, fleet_batches(1, 100, seed=9), "the next batch folded")  # it starts one again
    assert rec.deriver_restarts == 1 and first not in deriver_children()


def test_a_child_that_keeps_dying_is_started_again_at_once_only_once_a_minute(live) -> None:
    # A fault it meets again each time it folds the session (a damaged batch, no memory for it):
    # not a restart loop without data; the next batch starts it again, as before.
    frames, rec = live
    record(frames, rec, fleet_batches(1, 100, seed=10), "the batch folded")
    time.sleep(REVIVE_AFTER_S)
    kill_deriver()
    frames.wait(lambda m: len(frames.processes()) == 2 and m.total == 100, "started again at once")
    time.sleep(REVIVE_AFTER_S)
    second = kill_deriver()
    time.sleep(0.5)
    assert rec.deriver_restarts == 1 and deriver_children(fold=True) == []  # waits for data this time
    assert second in deriver_children()  # not reaped yet: its command line is gone
    write_keyed(rec, fleet_batches(2, 100, seed=10)[1], T0 + 5)
    frames.wait(lambda m: len(frames.processes()) == 3 and m.total == 200, "the next batch starts it")
    assert rec.deriver_restarts == 2


def test_a_full_disk_keeps_the_fold_and_what_the_window_shows(live) -> None:
    frames, rec = live
    batches = fleet_batches(5, 200, seed=4)
    record(frames, rec, batches[:3], "the batches before the disk filled up")
    children = deriver_children()
    (child,) = deriver_children(fold=True)
    rec.max_bytes = 1  # the file may not grow by a page: SQLITE_FULL, as a full disk
    for attempt in range(5):  # the stream re-sends, again and again
        with pytest.raises(RecordingUnavailable):
            write_keyed(rec, batches[3], T0 + 4 + attempt)
    time.sleep(0.3)
    with frames.lock:
        assert frames.mirror.total == 600 and len(frames.mirror.devices) == 12  # still shown
    assert deriver_children() == children and rec.deriver_restarts == 0  # not folded again per retry
    rec.max_bytes = None  # space again
    write_keyed(rec, batches[3], T0 + 10)
    write_keyed(rec, batches[4], T0 + 11)
    frames.wait(lambda m: m.total == 1_000, "the batches after")
    assert frames.processes() == {child}
    rec.close()  # the reopen's recovery and the deriver both chunked: every message once, none left out
    rows = [(r[1], r[2]) for found in track_rows(rec.path).values() for r in found]
    assert len(rows) == len(set(rows)) == 1_000


def test_trails_as_long_as_the_window_keeps_and_parameters_read_once_they_are_there(live) -> None:
    frames, rec = live
    rec.fold_command("trail", 500)  # the window keeps 500 positions a device (as `LiveFeed` says)
    frames.mirror.set_trail_length(500)
    track = [{"ident": "long", "timestamp": T0 + i, "position.latitude": 50 + i * 1e-4, "position.longitude": 14.0}
             for i in range(400)]
    assert frames.source.params(1, 0) is None  # not there yet: nothing, and nothing remembered
    write_keyed(rec, orjson.dumps(track), T0 + 500)
    frames.wait(lambda m: m.total == 400, "the track")
    assert len(frames.mirror.devices["long"].trail) == 400  # more than the fold's default of 200
    assert frames.source.params(1, 0)["ident"] == "long"
    frames.source.retire()  # another file is recorded now: its batch 1 is another batch
    assert frames.source.params(1, 0) is None


def test_parameters_read_from_the_file_are_what_normalizing_makes_of_any_batch(live) -> None:
    # Flat (flespi's default), nested (convert_message style) and an element that is no object: a
    # logged row's parameters, read when asked for, are the ones the fold normalized.
    frames, rec = live
    flat = [{"ident": "f", "timestamp": T0 + i, "position.latitude": 50.0, "position.longitude": 14.0, "n": i}
            for i in range(3)]
    nested = [{"ident": "n", "timestamp": T0, "position": {"latitude": 50.0, "longitude": 14.0},
               "can": {"x": {"y": 1}}}, 7, {"ident": "n", "timestamp": T0 + 1, "text": "{ not an object }"}]
    for i, batch in enumerate((flat, nested), start=1):
        write_inline(rec, orjson.dumps(batch), T0 + i)
    frames.wait(lambda m: m.total == 6, "both batches")
    expected = normalize_batch(flat, T0 + 1) + normalize_batch(nested, T0 + 2)
    with frames.lock:
        got = [e.message.params for e in frames.mirror.log]
    assert got == [m.params for m in expected]
    assert got[3]["position.latitude"] == 50.0 and got[3]["can.x.y"] == 1 and got[4] == {"": 7}
