"""The window's exports are written by a child process: the same file as an export in place,
all or nothing when cancelled, failing or killed, and the child never outlives the export."""

from __future__ import annotations

import re
import sqlite3
import subprocess

import orjson
import psutil
import pytest

from app.core.filters import compile_filter
from app.core.normalize import normalize_batch
from app.core.simfleet import FleetSimulator
from app.store.export_file import export_file
from app.store.export_process import ExportFailed, ExportJob, export_in_child
from app.store.exporters import Cancelled
from app.store.faults import file_id
from app.store.points import PointFilter
from app.store.recorder import Recorder

START = 1_767_225_600.0


def record(db, batches: int, per_batch: int = 2_000) -> None:
    fleet = FleetSimulator(40, seed=9, start=START, interval=5.0, bad_fix_rate=0.05)
    rec = Recorder(db)
    rec.start_session("child export")
    for i in range(batches):
        batch = fleet.next_messages(per_batch)
        body = orjson.dumps(batch)
        rec.write_batch(START + i, "127.0.0.1", len(body), body, normalize_batch(batch, START + i, body), 1.0)
    rec.close()


@pytest.fixture
def small_db(tmp_path):
    db = tmp_path / "small.sqlite"
    record(db, 3)
    return db


@pytest.fixture(scope="module")
def large_db(tmp_path_factory):
    db = tmp_path_factory.mktemp("large") / "large.sqlite"
    record(db, 60)  # 120,000 points: an export that runs for a good fraction of a second
    return db


def exporters_running() -> list[psutil.Process]:
    running = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE and "app.store.export_process" in " ".join(p.cmdline()):
                running.append(p)
        except psutil.Error:  # ended meanwhile
            pass
    return running


def left_beside(db, out_dir) -> list[str]:
    return sorted(p.name for p in out_dir.iterdir() if not p.name.startswith(db.stem))


@pytest.mark.parametrize(("fmt", "options"), [
    ("gpx", {"where": "position.speed > 20"}),
    ("csv", {"csv_options": {"csv_profile": "gis", "raw_text": True}}),
    ("geojson", {"points": True}),
])
def test_the_child_writes_the_file_an_export_in_place_writes(small_db, tmp_path, fmt, options) -> None:
    conn = sqlite3.connect(small_db)
    idents = tuple(ident for (ident,) in conn.execute("SELECT DISTINCT ident FROM tracks ORDER BY ident LIMIT 25"))
    f = PointFilter(1, idents=idents, t_from=START + 30)  # some devices, from a time on
    job = ExportJob(fmt, f, tmp_path / f"child.{fmt}", "title", **options)
    progress: list[tuple[int, int]] = []
    result = export_in_child(small_db, job, lambda done, total: progress.append((done, total)), lambda: False)

    where = compile_filter(options["where"]) if "where" in options else None
    here = export_file(conn, fmt, f, tmp_path / f"here.{fmt}", title="title", where=where,
                       points=options.get("points", False), **options.get("csv_options", {}))
    conn.close()
    def content(path):  # without the time of writing GPX puts in its metadata
        return re.sub(rb"<metadata>.*?</metadata>", b"", path.read_bytes())

    assert content(job.target) == content(tmp_path / f"here.{fmt}")
    assert result.written == here.written > 0
    assert progress and progress[-1][0] == progress[-1][1]  # the bar reaches its end
    assert left_beside(small_db, tmp_path) == sorted([f"child.{fmt}", f"here.{fmt}"]
                                                     + (["child.csvt", "here.csvt"] if fmt == "csv" else []))


def test_a_cancelled_export_writes_nothing_and_the_child_ends(large_db, tmp_path) -> None:
    target = tmp_path / "cancelled.gpx"
    seen: list[tuple[int, int]] = []
    with pytest.raises(Cancelled):
        export_in_child(large_db, ExportJob("gpx", PointFilter(1), target),
                        lambda done, total: seen.append((done, total)), lambda: bool(seen))  # once it has begun
    done, total = seen[-1]
    assert done < total  # stopped before its end, not finished and then called cancelled
    assert left_beside(large_db, tmp_path) == []  # no target, no partial file


def test_a_failed_export_says_why(small_db, tmp_path) -> None:
    target = tmp_path / "no such directory" / "out.kml"
    with pytest.raises(ExportFailed, match="No such file or directory"):
        export_in_child(small_db, ExportJob("kml", PointFilter(1), target), lambda *_: None, lambda: False)


def test_an_export_process_that_dies_is_reported_and_its_partial_file_removed(large_db, tmp_path) -> None:
    target = tmp_path / "killed.csv"

    killed: list[psutil.Process] = []

    def kill_the_child(done: int, total: int) -> None:
        if not killed:
            killed.extend(exporters_running())
            for child in killed:
                child.kill()

    with pytest.raises(ExportFailed, match=r"the export process was killed \(SIGKILL; out of memory, or stopped"):
        export_in_child(large_db, ExportJob("csv", PointFilter(1), target), kill_the_child, lambda: False)
    assert left_beside(large_db, tmp_path) == []


def test_the_child_stops_when_the_window_goes(large_db, tmp_path) -> None:
    """The window closed (its end of the pipe gone) mid-export: the child cancels, deletes its
    partial file and exits, rather than writing on unseen."""
    from app.store.module_process import start_module

    target = tmp_path / "orphan.gpx"
    child = start_module("app.store.export_process", str(large_db), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        child.stdin.write(ExportJob("gpx", PointFilter(1), target).to_json() + b"\n")
        child.stdin.flush()
        assert b"progress" in child.stdout.readline()  # under way
        child.stdin.close()
        out = child.stdout.read()
        assert child.wait(30) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stderr.close()
    assert b'{"cancelled":true}' in out
    assert left_beside(large_db, tmp_path) == []


def test_a_recording_moved_away_is_an_error_not_a_new_empty_file(small_db, tmp_path) -> None:
    moved = small_db.rename(tmp_path / "moved.sqlite")
    with pytest.raises(ExportFailed, match="unable to open database file"):
        export_in_child(small_db, ExportJob("gpx", PointFilter(1), tmp_path / "out.gpx"), lambda *_: None,
                        lambda: False)
    assert not small_db.exists() and moved.exists()


def test_a_recording_in_a_folder_with_uri_characters_exports(tmp_path) -> None:
    """'?' and '#' in a path are plain characters to a user (they cut an SQLite URI short)."""
    folder = tmp_path / "trips?2025 #1"
    folder.mkdir()
    db = folder / "rec.sqlite"
    record(db, 1)
    result = export_in_child(db, ExportJob("gpx", PointFilter(1), tmp_path / "out.gpx"), lambda *_: None,
                             lambda: False)
    assert result.written > 0 and (tmp_path / "out.gpx").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.gpx", "trips?2025 #1"]  # nothing made beside


def test_an_export_of_a_recording_since_replaced_reads_nothing_of_the_file_now_at_the_path(small_db, tmp_path) -> None:
    """The session was chosen in one file (the job names it); another file has been put at the
    path since. The child exports nothing of it (its session 1 is another session) and says why."""
    chosen = file_id(small_db)
    small_db.rename(tmp_path / "moved.sqlite")
    record(small_db, 1)  # another recording at the same path, with a session 1 of its own
    target = tmp_path / "out.gpx"
    with pytest.raises(ExportFailed, match="was replaced by another file"):
        export_in_child(small_db, ExportJob("gpx", PointFilter(1), target, source=chosen), lambda *_: None,
                        lambda: False)
    assert left_beside(small_db, tmp_path) == ["moved.sqlite"]
    result = export_in_child(small_db, ExportJob("gpx", PointFilter(1), target, source=file_id(small_db)),
                             lambda *_: None, lambda: False)
    conn = sqlite3.connect(small_db)
    try:  # the file at the path, named as such: its one batch, as an export in place writes it
        assert result.written == export_file(conn, "gpx", PointFilter(1), tmp_path / "here.gpx").written < 2_000 * 3
    finally:
        conn.close()
