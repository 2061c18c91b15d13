"""Batches acknowledged by their keys alone and derived by the second process: the file ends up
exactly as if the recorder had derived them itself, reads whole meanwhile, and two derivers (one
left over from a killed recorder) never chunk a batch twice."""

from __future__ import annotations

import asyncio
import io
import os
import pickle
import signal
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

import orjson
import pytest

from app.core.normalize import normalize_batch
from app.core.simfleet import FleetSimulator
from app.server.keyed_body import read_keyed
from app.store import deriver as deriver_module
from app.store.deriver import READ_BATCHES, ChunkDeriver, DeriverProcess
from app.store.faults import file_id
from app.store.live_fold import LiveFold
from app.store.points import PointFilter, iter_points
from app.store.recorder import Recorder
from app.store.replay import ReplaySource, open_session, read_export_choices
from app.store.schema import connect


def fleet_batches(count: int, size: int, seed: int = 8) -> list[bytes]:
    fleet = FleetSimulator(12, seed=seed, start=1_700_000_000)
    return [orjson.dumps(fleet.next_messages(size)) for _ in range(count)]


def write_keyed(rec: Recorder, body: bytes, received_at: float = 1_700_000_100.0):
    """Record a batch as the listener does: in the recorder's writer thread (where it also starts a
    deriver again that died)."""
    keyed = read_keyed(body, 100_000)
    assert keyed is not None, "a simulated flespi batch takes the fast path"
    return asyncio.run(rec.record_keyed(received_at=received_at, peer="127.0.0.1", wire_bytes=len(body), body=body,
                                        keys=keyed.keys, process_ms=1.0))


def write_inline(rec: Recorder, body: bytes, received_at: float = 1_700_000_100.0):
    messages = normalize_batch(orjson.loads(body), received_at, body)
    return asyncio.run(rec.record_batch(received_at=received_at, peer="127.0.0.1", wire_bytes=len(body), body=body,
                                        messages=messages, process_ms=1.0))


def track_rows(path: Path) -> dict[str, list]:
    """Every chunk row of the file, per device, in batch order (chunk boundaries aside)."""
    conn = sqlite3.connect(path)
    try:
        rows: dict[str, list] = {}
        for ident, name, packed in conn.execute("SELECT ident, name, rows FROM tracks ORDER BY id"):
            rows.setdefault(ident, []).extend((name, *row) for row in orjson.loads(packed))
        return {ident: sorted(found, key=lambda r: (r[1], r[2])) for ident, found in rows.items()}
    finally:
        conn.close()


def batch_rows(path: Path) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT id, count, flagged, duplicates FROM batches ORDER BY id").fetchall()
    finally:
        conn.close()


def deriver_children(fold: bool | None = None) -> list[int]:
    """This process's deriver children (started by the recorder's writer thread; not the
    QtWebEngine processes a window test in the same run left): with ``fold``, only the live
    fold's (True) or only the chunks' (False)."""
    found = []
    for task in os.listdir(f"/proc/{os.getpid()}/task"):
        try:
            with open(f"/proc/{os.getpid()}/task/{task}/children") as listing:
                found += [int(pid) for pid in listing.read().split()]
        except OSError:  # that thread ended meanwhile
            continue
    return [pid for pid in found if b"QtWebEngine" not in _cmdline(pid)
            and (fold is None or (b"\0--fold\0" in _cmdline(pid)) == fold)]


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read()
    except OSError:  # gone meanwhile
        return b""


def test_keyed_batches_end_up_chunked_exactly_as_the_recorder_would_chunk_them(tmp_path) -> None:
    batches = fleet_batches(6, 400)
    inline = Recorder(tmp_path / "inline.sqlite")
    inline.start_session()
    elsewhere = Recorder(tmp_path / "elsewhere.sqlite", derive_elsewhere=True)
    elsewhere.start_session()
    for body in batches:
        expected = write_inline(inline, body)
        result = write_keyed(elsewhere, body)
        assert (result.batch_id, result.count, result.duplicates) == (expected.batch_id, expected.count, 0)
        assert result.flagged is None  # not known until derived
    inline.close()
    elsewhere.close()  # waits for the deriver to finish
    assert track_rows(tmp_path / "elsewhere.sqlite") == track_rows(tmp_path / "inline.sqlite")
    assert batch_rows(tmp_path / "elsewhere.sqlite") == batch_rows(tmp_path / "inline.sqlite")
    assert sum(flagged for _, _, flagged, _ in batch_rows(tmp_path / "inline.sqlite")) > 0  # faults were there
    assert not deriver_children()


def test_the_recording_reads_whole_while_the_deriver_is_behind(tmp_path) -> None:
    path = tmp_path / "behind.sqlite"
    rec = Recorder(path, derive_elsewhere=True)
    session = rec.start_session()
    try:
        for body in fleet_batches(5, 300):
            write_keyed(rec, body)
        conn = connect(path, readonly=True)
        points = list(iter_points(conn, PointFilter(session)))  # chunked or not yet: all of them
        conn.close()
        assert len(points) == 1500
        assert len({(p.batch_id, p.idx) for p in points}) == 1500
    finally:
        rec.close()


def test_replay_and_the_export_dialog_count_the_batches_not_chunked_yet(tmp_path) -> None:
    """Under a load the machine cannot keep up with, the chunks' process lags by minutes. Opening
    the session then still shows every device with its name, the whole span and every message in
    the replay's density bar: read from the batches not chunked yet, as the export reads them."""
    path = tmp_path / "lagging.sqlite"
    rec = Recorder(path, derive_elsewhere=True)
    session = rec.start_session()
    stopped = None
    with closing(connect(path, readonly=True)) as reader:
        try:
            for body in fleet_batches(4, 300):
                write_keyed(rec, body)
            deadline = time.monotonic() + 30
            while reader.execute("SELECT indexed_batch FROM sessions WHERE id = ?", (session,)).fetchone()[0] < 4:
                assert time.monotonic() < deadline, "the chunks' process never chunked the first batches"
                time.sleep(0.05)
            [stopped] = deriver_children(fold=False)
            os.kill(stopped, signal.SIGSTOP)  # the chunks' process falls behind
            for body in fleet_batches(2, 300, seed=9):
                write_keyed(rec, body)
            late = {"ident": "late-van", "device.name": "Late van", "timestamp": 1_600_000_000.0,  # buffered history
                    "position.latitude": 50.0, "position.longitude": 10.0}
            write_keyed(rec, orjson.dumps([late]))
            assert reader.execute("SELECT count(*) FROM tracks WHERE ident = 'late-van'").fetchone()[0] == 0

            choices = read_export_choices(session, reader)
            assert "late-van" in choices.idents and choices.names["late-van"] == "Late van"
            assert choices.start == 1_600_000_000.0
            source = ReplaySource(reader, session)
            everything = [p.ts for p in iter_points(reader, PointFilter(session))]
            assert len(everything) == 1801
            assert (source.start, source.end) == (min(everything), max(everything))
            lagging = source.density(40)
            assert sum(lagging) == pytest.approx(1801) and lagging[0] == 1.0  # the late van, alone at the start
            van = open_session(session, ("late-van",), 5, 40, reader)  # the device picker's choice
            assert van.source.idents == ["late-van"] and set(van.everyone) == set(choices.idents)
            assert sum(van.density) == 1.0 and van.start["late-van"].latest.message.params["device.name"] == "Late van"
        finally:
            if stopped is not None:
                os.kill(stopped, signal.SIGCONT)
            rec.close()
        assert reader.execute("SELECT count(*) FROM tracks WHERE ident = 'late-van'").fetchone()[0] == 1
        caught_up = ReplaySource(reader, session).density(40)
        opened_before = source.density(40)  # the source opened while they lagged, asked again
    assert sum(caught_up) == pytest.approx(1801) and caught_up[0] == 1.0  # chunked now: the same messages
    assert sum(opened_before) == pytest.approx(1801)  # none counted twice, chunked and not chunked


def test_a_resent_or_recut_batch_keeps_each_message_once_on_the_fast_path(tmp_path) -> None:
    path = tmp_path / "resent.sqlite"
    first, second = fleet_batches(2, 200, seed=3)
    rec = Recorder(path, derive_elsewhere=True)
    rec.start_session()
    try:
        write_keyed(rec, first)
        again = write_keyed(rec, first)
        assert again.duplicate and again.new == 0
        recut = orjson.dumps(orjson.loads(first)[150:] + orjson.loads(second)[:100])  # grown, cut elsewhere
        result = write_keyed(rec, recut)
        assert (result.count, result.duplicates, result.new) == (150, 50, 100)
    finally:
        rec.close()
    assert sum(len(rows) for rows in track_rows(path).values()) == 300


def recorded_then_deriver_killed(path: Path, seed: int, batches: int) -> None:
    """A session whose deriver died with its work unwritten (the recorder then closed)."""
    rec = Recorder(path, derive_elsewhere=True)
    rec.start_session()
    for body in fleet_batches(batches, 250, seed=seed):
        write_keyed(rec, body)
    [child] = deriver_children()
    os.kill(child, signal.SIGKILL)
    rec.close()  # finishing fails: the chunks are left to the next open


def left_over_deriver(path: Path) -> ChunkDeriver:
    """A deriver that has read every batch (as one outliving a killed recorder would have)."""
    deriver = ChunkDeriver(connect(path, create=False), after=0)
    while deriver.read():
        pass
    return deriver


def test_a_deriver_outliving_its_recorder_never_chunks_a_batch_twice(tmp_path) -> None:
    first = tmp_path / "orphan.sqlite"
    recorded_then_deriver_killed(first, seed=5, batches=4)
    orphan = left_over_deriver(first)
    Recorder(first).close()  # the next recorder's recovery chunks everything first ...
    orphan.flush(everything=True)  # ... so the left-over deriver's mark moved: it writes nothing
    orphan.conn.close()
    rows = [(r[1], r[2]) for found in track_rows(first).values() for r in found]
    assert len(rows) == len(set(rows)) == 1000

    # The other order: the left-over deriver writes first, recovery then finds nothing to do.
    second = tmp_path / "orphan2.sqlite"
    recorded_then_deriver_killed(second, seed=6, batches=3)
    orphan = left_over_deriver(second)
    orphan.flush(everything=True)
    orphan.conn.close()
    Recorder(second).close()
    rows = [(r[1], r[2]) for found in track_rows(second).values() for r in found]
    assert len(rows) == len(set(rows)) == 750


def test_a_deriver_knows_when_committed_batches_wait_for_it(tmp_path) -> None:
    # While it is behind (a backlog), the live fold sends fewer, fuller frames (`live_fold`).
    path = tmp_path / "behind.sqlite"
    recorded_then_deriver_killed(path, seed=8, batches=READ_BATCHES + 3)
    deriver = ChunkDeriver(connect(path, create=False), after=0)
    try:
        assert deriver.behind()
        assert deriver.read() == READ_BATCHES and deriver.behind()
        assert deriver.read() == 3 and not deriver.behind()
    finally:
        deriver.conn.close()


def chunk_mark(path: Path) -> int:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT max(indexed_batch) FROM sessions").fetchone()[0]


def test_the_live_fold_writes_no_chunk_and_is_behind_only_while_batches_wait_for_it(tmp_path) -> None:
    # The window's fold has a process of its own: the chunks are the other child's work.
    path = tmp_path / "fold.sqlite"
    recorded_then_deriver_killed(path, seed=8, batches=READ_BATCHES + 3)
    before = track_rows(path)
    assert chunk_mark(path) < READ_BATCHES + 3  # batches are waiting to be chunked
    conn = connect(path, create=False)
    fold = LiveFold(io.BytesIO(), 1, 0)
    deriver = ChunkDeriver(conn, after=0, fold=fold)
    try:
        assert deriver.behind()
        assert deriver.read() == READ_BATCHES and deriver.behind()
        assert deriver.read() == 3 and not deriver.behind()
        deriver.flush(everything=True)
        assert fold.fleet.total == (READ_BATCHES + 3) * 250
    finally:
        fold.close()
        conn.close()
    assert track_rows(path) == before


def interrupt_statement(conn: sqlite3.Connection, starting: str) -> None:
    """Make the next statement on ``conn`` that starts with ``starting`` fail, as a read error
    would (SQLite interrupts it through its own progress hook)."""
    armed = []
    conn.set_trace_callback(lambda sql: armed.append(1) if sql.startswith(starting) else None)
    conn.set_progress_handler(lambda: 1 if armed else 0, 1)


def test_a_read_failing_after_another_writer_moved_the_mark_leaves_no_hole(tmp_path, monkeypatch) -> None:
    # Another writer (recovery) chunked part of what this deriver holds: its compare-and-set
    # fails, and it derives the session again from the new mark. If that read fails too, the
    # deriver must start again from the mark it knew — not from past what it had read, which would
    # leave messages no chunk and no later recovery (it starts at the mark) ever covers.
    monkeypatch.setattr(deriver_module, "FLUSH_MESSAGES", 500)
    monkeypatch.setattr(deriver_module, "READ_BATCHES", 2)
    path = tmp_path / "raced.sqlite"
    recorded_then_deriver_killed(path, seed=9, batches=12)
    deriver = ChunkDeriver(connect(path, create=False), after=0)
    other = ChunkDeriver(connect(path, create=False), after=0)
    try:
        for _ in range(4):  # 8 batches read and derived, not written yet
            deriver.read()
        other.read()
        other.read()
        other.flush(everything=True)
        assert chunk_mark(path) == 4
        interrupt_statement(deriver.conn, "SELECT indexed_batch FROM sessions")
        with pytest.raises(sqlite3.OperationalError):
            deriver.flush()
        deriver.conn.set_progress_handler(None, 0)
        deriver.conn.set_trace_callback(None)
        deriver.forget()  # as the child's loop does after an error
        while deriver.read():
            deriver.flush()
        while chunk_mark(path) < 12:
            before = chunk_mark(path)
            deriver.flush()
            assert chunk_mark(path) > before
    finally:
        deriver.conn.close()
        other.conn.close()
    rows = [(r[1], r[2]) for found in track_rows(path).values() for r in found]
    assert len(rows) == len(set(rows)) == 3000


def test_the_deriver_exits_without_writing_when_its_recorder_is_killed(tmp_path) -> None:
    from tests.processes import recorder_process, trackmon

    db = tmp_path / "killed.sqlite"
    with recorder_process(db) as rec:
        assert trackmon("simulate", "--to", rec.url, "--rate", "0", "--count", "3000", "--batch", "500",
                        "--seed", "7").returncode == 0
        children = [int(pid) for task in os.listdir(f"/proc/{rec.process.pid}/task")
                    for pid in Path(f"/proc/{rec.process.pid}/task/{task}/children").read_text().split()]
        assert len(children) == 1, "trackmon record runs one deriver"
        rec.kill_hard()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{children[0]}").exists() and "Z" not in _state(children[0]):
            assert time.monotonic() < deadline, "the deriver outlived its recorder"
            time.sleep(0.05)
    conn = sqlite3.connect(db)
    # Whatever the deriver had written stands; the next open derives the rest, once.
    Recorder(db).close()
    assert conn.execute("SELECT sum(n) FROM tracks").fetchone()[0] == 3000
    assert conn.execute("SELECT sum(count) FROM batches").fetchone()[0] == 3000


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_a_deriver_that_dies_while_recording_is_started_again_and_its_work_redone(tmp_path) -> None:
    path = tmp_path / "restart.sqlite"
    batches = fleet_batches(6, 250, seed=9)
    rec = Recorder(path, derive_elsewhere=True)
    rec.start_session()
    try:
        for body in batches[:3]:
            write_keyed(rec, body)
        [child] = deriver_children()
        os.kill(child, signal.SIGKILL)  # out of memory, say
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}").exists() and "Z" not in _state(child):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        for body in batches[3:]:
            write_keyed(rec, body)
        assert rec.deriver_restarts == 1
        [replacement] = deriver_children()
        assert replacement != child
    finally:
        rec.close()
    rows = [(r[1], r[2]) for found in track_rows(path).values() for r in found]
    assert len(rows) == len(set(rows)) == 1500


def test_the_live_folds_frames_arrive_whole_when_the_child_is_stopped_and_continued_mid_write(
        tmp_path, monkeypatch) -> None:
    # Ctrl+Z and `fg` (or a debugger or profiler attaching) stop and continue the child while it
    # writes a frame into a full pipe. Under `python -u` / PYTHONUNBUFFERED=1 (many containers set
    # it) the child's standard output is the raw file: such a write came back having written part
    # of the frame, the rest was never written, and every later frame read as garbage.
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    path = tmp_path / "stopped.sqlite"
    fleet = FleetSimulator(600, seed=5, start=1_700_000_000)
    rec = Recorder(path)
    session = rec.start_session()
    last = 0
    for _ in range(30):
        last = write_inline(rec, orjson.dumps(fleet.next_messages(1_000))).batch_id
    rec.close()

    frames: list[tuple] = []
    unreadable: list[Exception] = []
    done = threading.Event()

    def on_frame(data: bytes) -> None:
        time.sleep(0.02)  # a window busy drawing: the child's writes wait on a full pipe
        try:
            frame = pickle.loads(data)
        except Exception as exc:  # what the window would have failed on
            unreadable.append(exc)
            done.set()
            return
        frames.append(frame)
        if frame[2] == last and frame[3] == 30_000:
            done.set()

    child = DeriverProcess(path, after=last, on_frame=on_frame, fold_session=session)
    try:
        deadline = time.monotonic() + 30
        while not done.is_set() and child.running():
            assert time.monotonic() < deadline, "the fold's last frame never came"
            os.kill(child.pid, signal.SIGSTOP)
            time.sleep(0.001)
            os.kill(child.pid, signal.SIGCONT)
            time.sleep(0.002)
        assert not unreadable
        assert done.is_set(), f"the child ended: {child.exit_status()}"
        assert sum(len(frame[5]) for frame in frames) >= 10_000  # log rows: many frames larger than the pipe
    finally:
        os.kill(child.pid, signal.SIGCONT)
        child.finish()


def test_a_deriver_started_for_a_file_since_replaced_leaves_the_file_now_at_the_path_alone(tmp_path) -> None:
    """The recorder starts its children for the file it has open. One that gets going only after
    that file was replaced (moved away, another recording put at the path, the old file's -wal
    and -shm still beside it: the chunks' child, at the lowest priority, may wait seconds for a
    core) must not open what is at the path: SQLite would pair the new file with the old WAL and,
    on closing, write the old file's pages into it — the recording moved away left without its
    batches, and the other one holding them (seen in the window under load: tests/ui)."""
    path, old, snapshot = tmp_path / "rec.sqlite", tmp_path / "old.sqlite", tmp_path / "snapshot"
    snapshot.mkdir()
    rec = Recorder(path, derive_elsewhere=False)
    rec.start_session()
    for body in fleet_batches(3, 50):
        write_inline(rec, body)
    for suffix in ("", "-wal", "-shm"):  # the old file as it stands mid-recording: its batches in its WAL
        (snapshot / f"rec.sqlite{suffix}").write_bytes(Path(f"{path}{suffix}").read_bytes())
    rec.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    (snapshot / "rec.sqlite").rename(old)
    Recorder(tmp_path / "other.sqlite").close()
    (tmp_path / "other.sqlite").rename(path)
    for suffix in ("-wal", "-shm"):
        (snapshot / f"rec.sqlite{suffix}").rename(f"{path}{suffix}")
    other, old_wal = path.read_bytes(), Path(f"{path}-wal").read_bytes()

    chunks = DeriverProcess(path, 0, file=file_id(old))
    assert not chunks.finish() and chunks.exit_status() == "exit code 4"
    frames: list[bytes] = []
    fold = DeriverProcess(path, 0, on_frame=frames.append, fold_session=1, file=file_id(old))
    try:
        assert fold.ended(30) and fold.exit_status() == "exit code 4" and not frames
    finally:
        fold.stop()
    assert path.read_bytes() == other and Path(f"{path}-wal").read_bytes() == old_wal
