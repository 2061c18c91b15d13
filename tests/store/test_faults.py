"""Faults while recording, produced for real: a full disk (SQLite's own SQLITE_FULL through the
page limit), the file deleted, moved or replaced, a read-only file. The listener answers 503 with
the reason, stays up, and recording resumes by itself once the fault is gone; every acknowledged
message ends up in the file exactly once."""

from __future__ import annotations

import os
import resource
import shutil
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import orjson
import pytest

from app.core.normalize import normalize_batch
from app.store.faults import FileReplaced, RecordingUnavailable
from app.store.queries import list_sessions
from app.store.recorder import Recorder
from tests.conftest import http, running_listener
from tests.processes import recorder_process
from tests.store.faulty import T0, Stream, assert_each_once, batch, names


def status(served) -> dict:
    return http("GET", served.url.rstrip("/") + "/status").body


def backup(db, to) -> None:
    """A consistent copy of the recording (what a user restores), taken with SQLite's backup API."""
    source, target = sqlite3.connect(db), sqlite3.connect(to)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()


def test_a_full_disk_is_answered_503_and_recording_resumes_by_itself(db_path) -> None:
    with running_listener(db_path) as served:
        stream = Stream(served.post, pad=200)
        for number in range(3):
            assert stream.send(number).status == 200
        served.recorder.max_bytes = 1  # the file may not grow by a page: SQLITE_FULL
        refused = [number for number in range(3, 8) if stream.send(number).status == 503]
        assert refused, "a batch that needs the file to grow is refused"
        reply = stream.replies[-1]
        assert reply.status == 503 and reply.body["error"] == "not_recorded"
        assert "disk is full" in reply.body["detail"]
        now = status(served)
        assert "disk is full" in now["recording_problem"] and now["recording_problem_since"] > 0
        assert served.recorder.problem == now["recording_problem"]
        served.recorder.max_bytes = None  # space again: the stream's next re-send goes through
        for number in refused:
            assert stream.send(number).status == 200
        assert served.recorder.problem is None and status(served)["recording_problem"] is None
    assert_each_once(db_path, stream.acked)
    assert len(stream.acked) == 8 * 50


def test_a_deleted_file_is_refused_until_a_copy_is_restored(db_path, tmp_path) -> None:
    with running_listener(db_path) as served:
        stream = Stream(served.post)
        for number in range(3):
            assert stream.send(number).status == 200
        backup(db_path, tmp_path / "backup.sqlite")
        os.unlink(db_path)  # the -wal and -shm stay, as after `rm rec.sqlite`
        for _ in range(3):  # never 200 into the unlinked file, however often it is re-sent
            reply = stream.send(3)
            assert reply.status == 503 and "was deleted or moved away" in reply.body["detail"]
        assert "deleted or moved away" in status(served)["recording_problem"]
        shutil.copy(tmp_path / "backup.sqlite", db_path)
        for number in (3, 4):
            assert stream.send(number).status == 200
        assert served.recorder.problem is None
    assert_each_once(db_path, stream.acked)
    [session] = list_sessions(sqlite3.connect(db_path))  # the copy holds the session: it goes on
    assert session.messages == 250 and session.ended_at is not None
    assert list(tmp_path.glob("rec.sqlite-wal.orphan-*")), "the deleted file's WAL was set aside, not applied"


def test_a_file_moved_away_and_back_resumes_with_nothing_lost(db_path, tmp_path) -> None:
    with running_listener(db_path) as served:
        stream = Stream(served.post)
        for number in range(3):
            assert stream.send(number).status == 200
        os.rename(db_path, tmp_path / "moved.sqlite")
        assert stream.send(3).status == 503
        # Everything acknowledged went with the file (its WAL was checkpointed into it).
        moved = sqlite3.connect(tmp_path / "moved.sqlite")
        assert moved.execute("SELECT sum(count) FROM batches").fetchone()[0] == 150
        moved.close()
        os.rename(tmp_path / "moved.sqlite", db_path)
        for number in (3, 4):
            assert stream.send(number).status == 200
    assert_each_once(db_path, stream.acked)


def test_an_empty_file_put_at_the_path_starts_a_new_recording(db_path) -> None:
    with running_listener(db_path) as served:
        served.recorder.rename_session(served.recorder.session_id, "field test")
        stream = Stream(served.post)
        assert stream.send(0).status == 200
        os.unlink(db_path)
        assert stream.send(1).status == 503
        db_path.touch()
        assert stream.send(1).status == 200
    assert_each_once(db_path, names(batch(1)))  # batch 0 went with the deleted file
    [session] = list_sessions(sqlite3.connect(db_path))
    assert session.name == "field test"


def test_a_file_replaced_by_another_recording_takes_the_next_batch_into_a_session_of_its_own(db_path, tmp_path) -> None:
    other = tmp_path / "other.sqlite"
    with running_listener(other) as elsewhere:  # another recording, with a session and a batch of its own
        assert Stream(elsewhere.post).send(5).status == 200
    with running_listener(db_path) as served:
        served.recorder.rename_session(served.recorder.session_id, "field test")
        stream = Stream(served.post)
        assert stream.send(0).status == 200
        os.replace(other, db_path)
        assert stream.send(1).status == 200  # the very first batch into the file now at the path
    conn = sqlite3.connect(db_path)
    sessions = {s.id: s.name for s in list_sessions(conn)}
    where = conn.execute("SELECT session_id FROM batches ORDER BY id").fetchall()
    assert len(sessions) == 2 and [sessions[s] for (s,) in where] == ["", "field test"]  # not into the other's


def test_a_file_that_is_not_a_recording_is_never_written(db_path) -> None:
    with running_listener(db_path) as served:
        stream = Stream(served.post)
        assert stream.send(0).status == 200
        os.unlink(db_path)
        db_path.write_bytes(b"my notes, not a database\n" * 100)
        reply = stream.send(1)
        assert reply.status == 503 and "not a usable trackmon recording" in reply.body["detail"]
        assert db_path.read_bytes() == b"my notes, not a database\n" * 100


def _immutable(path, on: bool) -> bool:
    result = subprocess.run(["chattr", "+i" if on else "-i", str(path)], capture_output=True)
    return result.returncode == 0


def test_a_read_only_file_is_refused_until_it_is_writable_again(db_path, tmp_path) -> None:
    # File modes do not stop root, so the read-only file is made immutable (chattr +i), which
    # does. It replaces the recording, as when a user restores a write-protected copy.
    copy = tmp_path / "copy.sqlite"
    with running_listener(db_path) as served:
        stream = Stream(served.post)
        for number in range(2):
            assert stream.send(number).status == 200
        backup(db_path, copy)
        os.replace(copy, db_path)
        if not _immutable(db_path, True):
            pytest.skip("chattr +i is not available here")
        try:
            reply = stream.send(2)
            assert reply.status == 503 and "read-only" in reply.body["detail"], reply.body
            assert stream.send(2).status == 503
        finally:
            _immutable(db_path, False)
        assert stream.send(2).status == 200
        assert served.recorder.problem is None
    assert_each_once(db_path, stream.acked)


def test_writes_failing_in_a_record_process_are_503_until_they_work_again(tmp_path) -> None:
    # RLIMIT_FSIZE on the real `trackmon record` process: every write past the first byte of any
    # file fails with EFBIG (Python ignores SIGXFSZ), as a disk that stopped taking data would.
    db = tmp_path / "limited.sqlite"
    with recorder_process(db) as rec:
        stream = Stream(lambda messages: http("POST", rec.url, orjson.dumps(messages),
                                              {"Content-Type": "application/json"}))
        for number in range(3):
            assert stream.send(number).status == 200
        unlimited = resource.prlimit(rec.process.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(rec.process.pid, resource.RLIMIT_FSIZE, (1, unlimited[1]))
        try:
            for _ in range(3):
                reply = stream.send(3)
                assert reply.status == 503 and reply.body["error"] == "not_recorded"
                assert db.name in reply.body["detail"] and str(db.parent) not in reply.body["detail"]
            now = http("GET", rec.url + "status").body
            assert now["recording_problem"] and now["recording_problem_since"]
        finally:
            resource.prlimit(rec.process.pid, resource.RLIMIT_FSIZE, unlimited)
        for number in (3, 4, 5):
            assert stream.send(number).status == 200
        assert http("GET", rec.url + "status").body["recording_problem"] is None
    assert_each_once(db, stream.acked)
    assert len(stream.acked) == 6 * 50


def restorable_copy(tmp_path) -> Path:
    """Another recording, with one session named "restored copy", to be put at the recording's path."""
    other = tmp_path / "other.sqlite"
    copy = Recorder(other)
    copy.rename_session(copy.start_session(), "restored copy")
    copy.close()
    return other


def test_a_reader_of_a_file_replaced_before_the_next_batch_reads_that_file_not_the_old_wal(db_path, tmp_path) -> None:
    """A restored copy is put at the path; no batch has come since, so the recorder has not moved
    to it and the old file's -wal is still beside it. A reader opening the path would see the old
    file's sessions as the copy's (SQLite pairs the two). `open_reader` has the recorder move to
    the copy first: the reader sees the copy's sessions, the old -wal is set aside, and the file
    moved away keeps everything that was in its -wal."""
    other = restorable_copy(tmp_path)
    recorder = Recorder(db_path)
    try:
        recorder.rename_session(recorder.start_session(), "field test")
        assert os.path.getsize(f"{db_path}-wal") > 0  # the old file's newest pages are in its -wal
        generation = recorder.file_generation
        db_path.rename(tmp_path / "old.sqlite")
        other.rename(db_path)
        with closing(recorder.open_reader()) as conn:
            seen = [(s.id, s.name) for s in list_sessions(conn)]
        # The copy's session, and the one the recorder goes on in (the copy does not hold it).
        assert seen == [(1, "restored copy"), (2, "field test")]
        assert recorder.file_generation == generation + 1 and recorder.problem is None
        assert [p.name.split("-")[0] for p in tmp_path.glob("*.orphan-*")] == ["rec.sqlite"] * 2
    finally:
        recorder.close()
    with closing(sqlite3.connect(tmp_path / "old.sqlite")) as old:
        assert [(s.id, s.name) for s in list_sessions(old)] == [(1, "field test")]


def write(recorder: Recorder, number: int, size: int = 50) -> None:
    messages = batch(number, size, pad=400)
    body = orjson.dumps(messages)
    recorder.write_batch(T0 + number, "127.0.0.1", len(body), body, normalize_batch(messages, T0 + number, body), 1.0)


def test_after_a_failed_write_a_reader_still_reads_a_restored_copy_not_the_old_wal(db_path, tmp_path) -> None:
    """A write failed (the disk full); another reader kept the old file's -wal at the path. The file
    is moved away and a copy restored there: a reader reads the copy, the -wal is set aside, the
    full disk is still said (only a batch written shows it is over), and the file moved away holds
    everything acknowledged into it."""
    other = restorable_copy(tmp_path)
    recorder = Recorder(db_path)
    try:
        recorder.rename_session(recorder.start_session(), "field test")
        write(recorder, 0)
        with closing(sqlite3.connect(db_path)) as old_reader:  # the window's, say: keeps the -wal
            old_reader.execute("SELECT count(*) FROM batches").fetchone()
            recorder.max_bytes = 1
            with pytest.raises(RecordingUnavailable, match="disk is full"):
                write(recorder, 1)
            db_path.rename(tmp_path / "old.sqlite")
            other.rename(db_path)
            with closing(recorder.open_reader()) as conn:
                seen = [(s.id, s.name) for s in list_sessions(conn)]
        assert seen == [(1, "restored copy"), (2, "field test")]
        set_aside = sorted(p.name.split(".")[1] for p in tmp_path.glob("rec.sqlite-*.orphan-*"))
        assert set_aside == ["sqlite-shm", "sqlite-wal"]
        assert "disk is full" in (recorder.problem or "")
        recorder.max_bytes = None
        write(recorder, 2)
        assert recorder.problem is None
    finally:
        recorder.close()
    # The file moved away holds what was acknowledged into it, on its own (its WAL copied into it).
    with closing(sqlite3.connect(f"{(tmp_path / 'old.sqlite').as_uri()}?mode=ro", uri=True)) as old:
        assert [(s.id, s.name) for s in list_sessions(old)] == [(1, "field test")]
        assert old.execute("SELECT count(*) FROM batches").fetchone() == (1,)


def test_a_closed_recorder_moves_to_no_file(db_path, tmp_path) -> None:
    """A reader asking after the recording was closed (a dialog's thread, late) is told so; the file
    put at the path meanwhile is neither opened for writing nor given a session."""
    other = restorable_copy(tmp_path)
    recorder = Recorder(db_path)
    recorder.start_session("field test")
    recorder.close()
    db_path.rename(tmp_path / "old.sqlite")
    other.rename(db_path)
    with pytest.raises(RecordingUnavailable, match="has been closed"):
        recorder.open_reader()
    with closing(sqlite3.connect(db_path)) as conn:
        assert [(s.id, s.name) for s in list_sessions(conn)] == [(1, "restored copy")]


def test_a_reader_is_told_why_the_file_now_at_the_path_cannot_be_recorded(db_path, tmp_path) -> None:
    """Notes put at the path where the recording was: the dialog's reader says what is wrong with
    them (not that the recording was closed), and they are left untouched."""
    recorder = Recorder(db_path)
    try:
        recorder.start_session("field test")
        db_path.rename(tmp_path / "old.sqlite")
        db_path.write_bytes(b"my notes, not a database\n" * 100)
        with pytest.raises(RecordingUnavailable, match="not a usable trackmon recording"):
            recorder.open_reader()
        assert db_path.read_bytes() == b"my notes, not a database\n" * 100
    finally:
        recorder.close()


def test_a_change_to_a_session_listed_in_a_file_since_replaced_is_refused(db_path, tmp_path) -> None:
    """The sessions were listed in one file; a copy has been restored over it since, where session 1
    is another session. Renaming, noting or deleting "session 1" as listed changes nothing there."""
    other = restorable_copy(tmp_path)
    recorder = Recorder(db_path)
    try:
        recorder.start_session("field test")
        with closing(recorder.open_reader()) as conn:
            listed_in = conn.file
        db_path.rename(tmp_path / "old.sqlite")
        other.rename(db_path)
        for change in (lambda: recorder.rename_session(1, "renamed", file=listed_in),
                       lambda: recorder.set_note(1, "noted", file=listed_in),
                       lambda: recorder.delete_session(1, file=listed_in)):
            with pytest.raises(FileReplaced, match="nothing was changed"):
                change()
            assert recorder.problem is None  # it records into the copy: no banner saying it refuses
        with closing(recorder.open_reader()) as conn:
            assert [(s.id, s.name, s.note) for s in list_sessions(conn)] == [(1, "restored copy", ""),
                                                                              (2, "field test", "")]
            recorder.rename_session(1, "renamed", file=conn.file)  # listed in the file there now: made
    finally:
        recorder.close()
    with closing(sqlite3.connect(db_path)) as conn:
        assert [s.name for s in list_sessions(conn)] == ["renamed", "field test"]


def test_after_two_failed_writes_the_file_moved_away_still_holds_what_was_acknowledged(db_path, tmp_path) -> None:
    """A write fails on a full disk, and so does the reopen at the next batch (the chunks it has to
    write cannot be written either), while another reader holds the file. The file is then moved
    away and a copy restored: the file moved away holds its batch on its own, and the full disk is
    still said."""
    other = restorable_copy(tmp_path)
    recorder = Recorder(db_path)
    try:
        recorder.rename_session(recorder.start_session(), "field test")
        write(recorder, 0, size=2_000)  # its chunks are written by the next flush, or by a reopen
        with closing(sqlite3.connect(db_path)) as old_reader:  # the window's, say: keeps the -wal
            old_reader.execute("SELECT count(*) FROM batches").fetchone()
            recorder.max_bytes = 1
            for number in (1, 2):  # the second fails in the reopen: the 2,000 messages' chunks do not fit
                with pytest.raises(RecordingUnavailable, match="disk is full"):
                    write(recorder, number, size=2_000)
            db_path.rename(tmp_path / "old.sqlite")
            other.rename(db_path)
            with closing(recorder.open_reader()) as conn:
                assert [(s.id, s.name) for s in list_sessions(conn)] == [(1, "restored copy"), (2, "field test")]
        assert "disk is full" in (recorder.problem or "")
    finally:
        recorder.close()
    with closing(sqlite3.connect(f"{(tmp_path / 'old.sqlite').as_uri()}?mode=ro", uri=True)) as old:
        assert [(s.id, s.name) for s in list_sessions(old)] == [(1, "field test")]
        assert old.execute("SELECT count(*) FROM batches").fetchone() == (1,)
