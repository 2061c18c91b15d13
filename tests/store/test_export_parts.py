"""A large CSV export written by two processes is byte for byte the file one process writes;
a session that can still change is written by one."""

from __future__ import annotations

import io
import shutil
import sqlite3

import orjson
import psutil
import pytest

from app.core.normalize import normalize_batch
from app.core.simfleet import FleetSimulator
from app.store import export_parts
from app.store.export_file import export_file
from app.store.exporters import Cancelled, run_export
from app.store.points import PointFilter
from app.store.recorder import Recorder
from app.store.schema import connect

START = 1_767_225_600.0


@pytest.fixture
def fleet_db(tmp_path):
    fleet = FleetSimulator(12, seed=4, start=START, interval=5.0, bad_fix_rate=0.05)
    db = tmp_path / "fleet.sqlite"
    rec = Recorder(db)
    rec.start_session("parts")
    for i in range(12):
        batch = fleet.next_messages(500)
        body = orjson.dumps(batch)
        rec.write_batch(START + i, "127.0.0.1", len(body), body, normalize_batch(batch, START + i, body), 1.0)
    rec.close()
    return db


def serial(db, f: PointFilter, **options) -> bytes:
    out = io.StringIO(newline="")
    conn = sqlite3.connect(db)
    run_export(conn, "csv", f, out, **options)
    conn.close()
    return out.getvalue().encode()


@pytest.mark.parametrize("options", [{}, {"csv_profile": "gis"}, {"raw_text": True}])
def test_two_processes_write_the_same_bytes(fleet_db, tmp_path, monkeypatch, options) -> None:
    monkeypatch.setattr(export_parts, "PARALLEL_MIN", 1000)
    f = PointFilter(1, t_from=START + 60)
    conn = sqlite3.connect(fleet_db)
    split = export_parts.split_time(conn, f)
    assert split is not None and split > START + 60
    target = tmp_path / "out.csv"
    writer = export_file(conn, "csv", f, target, **options)
    conn.close()
    expected = serial(fleet_db, f, **options)
    assert target.read_bytes() == expected
    assert writer.written == expected.count(b"\n") - 1
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("fleet")) == ["out.csv", "out.csvt"]


def test_a_session_being_recorded_is_written_by_one_process(fleet_db, monkeypatch) -> None:
    monkeypatch.setattr(export_parts, "PARALLEL_MIN", 1000)
    rec = Recorder(fleet_db)
    session = rec.start_session("live")
    batch = [{"ident": "x", "timestamp": START + i, "position.latitude": 1.0, "position.longitude": 2.0}
             for i in range(2000)]
    body = orjson.dumps(batch)
    rec.write_batch(START, "127.0.0.1", len(body), body, normalize_batch(batch, START, body), 1.0)
    conn = sqlite3.connect(fleet_db)
    assert export_parts.split_time(conn, PointFilter(session)) is None
    assert export_parts.split_time(conn, PointFilter(1)) is not None
    conn.close()
    rec.close()


def test_a_cancel_stops_the_second_process_and_leaves_nothing(fleet_db, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(export_parts, "PARALLEL_MIN", 1000)
    before = {p.pid for p in psutil.Process().children()}
    out = tmp_path / "out"
    out.mkdir()
    conn = sqlite3.connect(fleet_db)
    with pytest.raises(Cancelled):
        export_file(conn, "csv", PointFilter(1), out / "x.csv", cancelled=lambda: True)
    conn.close()
    assert list(out.iterdir()) == []
    assert not [p for p in psutil.Process().children() if p.pid not in before and p.status() != psutil.STATUS_ZOMBIE]


def test_a_cancel_counts_even_when_the_second_process_finished_first(fleet_db, tmp_path, monkeypatch) -> None:
    """Seen under load: the first half took longer than the whole second process, so waiting
    for it never polled the cancel, and a cancelled export was written."""
    monkeypatch.setattr(export_parts, "PARALLEL_MIN", 1000)
    conn = sqlite3.connect(fleet_db)
    f = PointFilter(1)
    second = export_parts.SecondHalf(conn, f, export_parts.split_time(conn, f), tmp_path / "part.csv",
                                     {"title": "t", "csv_profile": "trackmon", "raw_text": False})
    try:
        assert second.child.wait(60) == 0  # done (and well) before the first half would be
        with pytest.raises(Cancelled):
            second.finish(cancelled=lambda: True)
    finally:
        second.discard()
        conn.close()


def test_the_second_process_deletes_its_part_and_stops_when_its_parent_goes(fleet_db, tmp_path, monkeypatch) -> None:
    """An export killed mid-way (the window's export process, say) leaves no second half writing
    on for no one, nor its hidden part beside the target."""
    monkeypatch.setattr(export_parts, "PARALLEL_MIN", 1000)
    f = PointFilter(1, t_from=START + 60)
    conn = sqlite3.connect(fleet_db)
    part = tmp_path / ".out.partial.csv.second"
    second = export_parts.SecondHalf(conn, f, export_parts.split_time(conn, f), part,
                                     {"title": "t", "csv_profile": "trackmon", "raw_text": False})
    conn.close()
    second.child.stdin.close()  # what the parent's death does to the pipe
    assert second.child.wait(30) == 3
    assert not part.exists()
    second.discard()


def test_a_device_subset_longer_than_a_command_line_reaches_the_second_process(fleet_db, tmp_path, monkeypatch) -> None:
    """Thousands of devices ticked: the second process gets them all (the job is not an argument)."""
    monkeypatch.setattr(export_parts, "PARALLEL_MIN", 1000)
    conn = sqlite3.connect(fleet_db)
    real = [ident for (ident,) in conn.execute("SELECT DISTINCT ident FROM tracks ORDER BY ident LIMIT 6")]
    idents = tuple(real + [f"35262500{i:07d}-not-in-this-session" for i in range(10_000)])  # ~330 KB of JSON
    f = PointFilter(1, idents=idents, t_from=START + 60)
    assert export_parts.split_time(conn, f) is not None
    target = tmp_path / "subset.csv"
    writer = export_file(conn, "csv", f, target)
    conn.close()
    assert target.read_bytes() == serial(fleet_db, f)
    assert writer.written > 0


def test_the_second_process_reads_the_first_halfs_file_or_nothing(fleet_db, tmp_path, monkeypatch) -> None:
    """The first half reads the file it opened; if another file has been put at the path since,
    the second half must not write that file's points after them: it fails, and says why."""
    monkeypatch.setattr(export_parts, "PARALLEL_MIN", 1000)
    conn = connect(fleet_db, readonly=True)
    f = PointFilter(1)
    split = export_parts.split_time(conn, f)
    assert split is not None
    fleet_db.rename(tmp_path / "moved.sqlite")
    shutil.copyfile(tmp_path / "moved.sqlite", fleet_db)  # the same bytes, another file
    second = export_parts.SecondHalf(conn, f, split, tmp_path / "part.csv",
                                     {"title": "t", "csv_profile": "trackmon", "raw_text": False})
    try:
        with pytest.raises(OSError, match="was replaced by another file"):
            second.finish()
    finally:
        second.discard()
        conn.close()
