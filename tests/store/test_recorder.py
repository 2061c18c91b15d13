"""The recorder's chunking of per-device track rows across batches."""

from __future__ import annotations

import sqlite3

import orjson
import pytest

from app.core.normalize import normalize_batch
from app.store import recorder as recorder_module
from app.store.queries import list_sessions
from app.store.recorder import Recorder, RecordingInUse
from tests.processes import recorder_process, trackmon


def write(rec: Recorder, batch: list[dict], received_at: float = 100.0) -> None:
    body = orjson.dumps(batch)
    rec.write_batch(received_at, "127.0.0.1", len(body), body, normalize_batch(batch, received_at, body), 1.0)


def test_chunks_gather_a_device_across_batches_and_close_writes_the_rest(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(recorder_module, "FLUSH_SECONDS", 3600.0)
    monkeypatch.setattr(recorder_module, "FLUSH_MESSAGES", 10)
    rec = Recorder(tmp_path / "c.sqlite")
    rec.start_session()
    for b in range(5):  # 2 devices, 2 messages per batch: a flush after 10 messages
        write(rec, [{"ident": d, "timestamp": b * 10 + i} for d in ("x", "y") for i in range(2)])
    conn = sqlite3.connect(tmp_path / "c.sqlite")
    assert conn.execute("SELECT ident, n FROM tracks ORDER BY ident").fetchall() == [("x", 6), ("y", 6)]
    rec.close()
    chunks = conn.execute("SELECT ident, n, t_min, t_max FROM tracks ORDER BY id").fetchall()
    assert chunks == [("x", 6, 0, 21), ("y", 6, 0, 21), ("x", 4, 30, 41), ("y", 4, 30, 41)]
    assert conn.execute("SELECT indexed_batch FROM sessions").fetchone()[0] == 5


def test_a_second_recorder_on_the_same_file_is_refused(tmp_path) -> None:
    first = Recorder(tmp_path / "one.sqlite")
    with pytest.raises(RecordingInUse, match="another trackmon"):
        Recorder(tmp_path / "one.sqlite")
    first.close()
    Recorder(tmp_path / "one.sqlite").close()  # free again once the first has closed


def test_a_second_recorder_through_a_symlink_is_refused(tmp_path) -> None:
    real = tmp_path / "real.sqlite"
    (tmp_path / "elsewhere").mkdir()
    link = tmp_path / "elsewhere" / "link.sqlite"
    link.symlink_to(real)
    first = Recorder(link)  # the file does not even exist yet: the lock follows the link anyway
    with pytest.raises(RecordingInUse, match="another trackmon"):
        Recorder(real)
    first.close()
    second = Recorder(real)
    with pytest.raises(RecordingInUse):
        Recorder(link)
    second.close()


def test_record_through_a_symlink_while_the_file_is_recorded_exits_with_the_reason(tmp_path) -> None:
    real = tmp_path / "real.sqlite"
    link = tmp_path / "link.sqlite"
    link.symlink_to(real)
    with recorder_process(real) as first:
        refused = trackmon("record", "--db", str(link), "--port", "0")
        assert refused.returncode != 0 and "being recorded by another trackmon" in refused.stderr
        assert trackmon("simulate", "--to", first.url, "--rate", "0", "--count", "1500").returncode == 0
    [session] = list_sessions(sqlite3.connect(real))
    assert session.messages == 1500


def test_starting_a_new_session_closes_the_previous_one(tmp_path) -> None:
    rec = Recorder(tmp_path / "s.sqlite")
    first = rec.start_session()
    second = rec.start_session()
    rec.close()
    conn = sqlite3.connect(tmp_path / "s.sqlite")
    ended = dict(conn.execute("SELECT id, ended_at FROM sessions").fetchall())
    assert ended[first] is not None and ended[second] is not None and ended[first] <= ended[second]
