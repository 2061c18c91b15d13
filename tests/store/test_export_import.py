"""Exports read back by independent parsers, escaping, filters, and export → import → export."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import gpxpy
import lxml.html
import orjson
import pytest
from lxml import etree

from app.core.normalize import normalize_batch
from app.core.simfleet import FleetSimulator
from app.store.exporters import collect_param_keys, run_export
from app.store.importers import ImportError_, import_file
from app.store.points import PointFilter, count_points, iter_points
from app.store.recorder import Recorder
from tests.processes import ROOT, trackmon

DATA = Path(__file__).resolve().parents[1] / "data"
XSD = etree.XMLSchema(etree.parse(str(DATA / "gpx-1.1.xsd")))
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def record(db: Path, batches: list[list[dict]]) -> int:
    rec = Recorder(db)
    session = rec.start_session("test")
    for i, batch in enumerate(batches):
        body = orjson.dumps(batch)
        rec.write_batch(START + i, "127.0.0.1", len(body), body, normalize_batch(batch, START + i, body), 1.0)
    rec.close()
    return session


@pytest.fixture
def fleet_db(tmp_path) -> tuple[Path, int]:
    fleet = FleetSimulator(4, seed=8, start=START, interval=5.0, bad_fix_rate=0.03)
    db = tmp_path / "fleet.sqlite"
    return db, record(db, [fleet.next_messages(250) for _ in range(8)])


def export(db: Path, fmt: str, f: PointFilter, **options) -> str:
    out = io.StringIO()
    conn = sqlite3.connect(db)
    try:
        run_export(conn, fmt, f, out, **options)
    finally:
        conn.close()
    return out.getvalue()


def valid_fixes(db: Path, session: int) -> list:
    conn = sqlite3.connect(db)
    try:
        return list(iter_points(conn, PointFilter(session, valid_only=True), by_device=True))
    finally:
        conn.close()


def test_gpx_is_valid_against_the_xsd_and_reads_back_in_gpxpy(fleet_db) -> None:
    db, session = fleet_db
    text = export(db, "gpx", PointFilter(session, valid_only=True))
    document = etree.fromstring(text.encode())
    assert XSD.validate(document), XSD.error_log
    gpx = gpxpy.parse(text)
    expected = valid_fixes(db, session)
    points = [p for t in gpx.tracks for s in t.segments for p in s.points]
    assert len(gpx.tracks) == 4 and len(points) == len(expected) and 900 < len(points) < 2000
    assert {t.name for t in gpx.tracks} == {p.name for p in expected}
    first, want = points[0], expected[0]
    assert (first.latitude, first.longitude, first.elevation) == (want.lat, want.lon, want.alt)
    assert first.time.timestamp() == pytest.approx(want.ts, abs=0.001)
    speeds = [float(e.text) for e in document.iter("{http://www.garmin.com/xmlschemas/TrackPointExtension/v2}speed")]
    assert len(speeds) == len(expected) and speeds[0] == pytest.approx(want.speed / 3.6)


def test_gpx_starts_a_new_segment_after_a_gap(tmp_path) -> None:
    db = tmp_path / "gap.sqlite"
    pts = [{"ident": "g", "timestamp": START + t, "position.latitude": 1.0 + t / 1e4, "position.longitude": 2.0}
           for t in (0, 10, 20, 1000, 1010)]
    session = record(db, [pts])
    gpx = gpxpy.parse(export(db, "gpx", PointFilter(session), gap=300))
    assert [len(s.points) for s in gpx.tracks[0].segments] == [3, 2]


def test_hostile_names_are_escaped_in_every_format(tmp_path) -> None:
    db = tmp_path / "names.sqlite"
    name = 'A & B <c> "d" \x01\x1f end'
    ident = "id<&>'"
    pts = [{"ident": ident, "device.name": name, "timestamp": START + i, "position.latitude": 10.0 + i / 1e3,
            "position.longitude": 20.0, "note": "x,y\n\"z\""} for i in range(3)]
    session = record(db, [pts])
    f = PointFilter(session)
    gpx = export(db, "gpx", f)
    assert XSD.validate(etree.fromstring(gpx.encode()))
    assert gpxpy.parse(gpx).tracks[0].name == 'A & B <c> "d"  end'  # control characters cannot be in XML
    kml = etree.fromstring(export(db, "kml", f).encode())
    placemark = kml.find(".//{http://www.opengis.net/kml/2.2}Placemark")
    assert placemark.findtext("{http://www.opengis.net/kml/2.2}name") == 'A & B <c> "d"  end'
    balloon = lxml.html.fragment_fromstring(placemark.findtext("{http://www.opengis.net/kml/2.2}description"),
                                            create_parent="div")  # KML clients render it as HTML
    assert ident in balloon.text_content() and len(balloon) == 0
    geo = json.loads(export(db, "geojson", f))
    assert geo["features"][0]["properties"]["name"] == name
    rows = list(csv.reader(io.StringIO(export(db, "csv", f, params=["note"]))))
    assert rows[1][0] == ident and rows[1][1] == name and rows[1][-1] == 'x,y\n"z"'


def test_csv_has_one_row_per_message_in_time_order_with_stable_columns(fleet_db) -> None:
    db, session = fleet_db
    f = PointFilter(session)
    conn = sqlite3.connect(db)
    keys = collect_param_keys(conn, f)
    conn.close()
    assert keys == sorted(keys) and "battery.level" in keys and "ain#1" in keys
    rows = list(csv.DictReader(io.StringIO(export(db, "csv", f, params=keys))))
    assert len(rows) == 2000  # every message, flagged ones included by default
    times = [r["time_utc"] for r in rows]
    assert times == sorted(times) and times[0] == "2026-01-01T00:00:00Z"
    assert list(rows[0])[:3] == ["ident", "name", "time_utc"] and list(rows[0])[13:] == keys
    assert {r["engine.ignition.status"] for r in rows} <= {"true", "false"}
    assert any(r["flags"] != "0" for r in rows)


def test_filters_devices_time_range_and_valid_fixes(fleet_db) -> None:
    db, session = fleet_db
    conn = sqlite3.connect(db)
    everything = list(iter_points(conn, PointFilter(session)))
    one = everything[0].ident
    subset = list(iter_points(conn, PointFilter(session, idents=(one,), t_from=START + 100, t_to=START + 600)))
    assert subset and {p.ident for p in subset} == {one}
    assert all(START + 100 <= p.ts <= START + 600 for p in subset)
    assert len(subset) == sum(1 for p in everything if p.ident == one and START + 100 <= p.ts <= START + 600)
    valid = list(iter_points(conn, PointFilter(session, valid_only=True)))
    assert len(valid) == sum(p.has_fix for p in everything) < len(everything)
    assert count_points(conn, PointFilter(session)) == len(everything) == 2000
    conn.close()


def test_kml_and_geojson_hold_a_track_per_device(fleet_db) -> None:
    db, session = fleet_db
    f = PointFilter(session, valid_only=True)
    expected = valid_fixes(db, session)
    kml = etree.fromstring(export(db, "kml", f).encode())
    ns = {"k": "http://www.opengis.net/kml/2.2"}
    coords = [c.text.split() for c in kml.findall(".//k:LineString/k:coordinates", ns)]
    assert len(coords) == 4 and sum(map(len, coords)) == len(expected)
    geo = json.loads(export(db, "geojson", f, points=True))
    lines = [x for x in geo["features"] if x["geometry"]["type"] == "LineString"]
    points = [x for x in geo["features"] if x["geometry"]["type"] == "Point"]
    assert len(lines) == 4 and len(points) == len(expected)
    assert sum(x["properties"]["points"] for x in lines) == len(expected)
    assert lines[0]["geometry"]["coordinates"][0][:2] == [expected[0].lon, expected[0].lat]


@pytest.mark.parametrize("fmt", ["gpx", "csv"])
def test_export_import_export_gives_the_same_points(fleet_db, tmp_path, fmt) -> None:
    db, session = fleet_db
    first = tmp_path / f"first.{fmt}"
    first.write_text(export(db, fmt, PointFilter(session, valid_only=fmt == "gpx")))
    summary = import_file(db, first)
    imported = summary.session_id
    assert imported != session and summary.points > 0
    again = export(db, fmt, PointFilter(imported, valid_only=fmt == "gpx"))
    body = first.read_text().splitlines()
    if fmt == "gpx":  # the header names the session and the export time
        assert again.splitlines()[3:] == body[3:]
    else:
        assert again.splitlines() == body


def test_gpx_from_another_tool_imports(tmp_path) -> None:
    other = tmp_path / "other.gpx"
    other.write_text(
        '<?xml version="1.0"?><gpx version="1.0" creator="x" xmlns="http://www.topografix.com/GPX/1/0">'
        "<trk><name>Morning ride</name><trkseg>"
        '<trkpt lat="48.1" lon="11.5"><ele>520</ele><time>2025-05-01T06:00:00Z</time><speed>5</speed>'
        "<course>90</course></trkpt>"
        '<trkpt lat="48.2" lon="11.6"><time>2025-05-01T06:00:10Z</time></trkpt>'
        "</trkseg></trk></gpx>")
    db = tmp_path / "o.sqlite"
    summary = import_file(db, other)
    points = valid_fixes(db, summary.session_id)
    assert summary.points == 2 and [p.ident for p in points] == ["Morning ride"] * 2
    assert points[0].speed == 18.0 and points[0].direction == 90.0 and points[0].alt == 520.0
    assert points[1].ts - points[0].ts == 10.0


def test_bad_import_files_are_refused_clearly(tmp_path) -> None:
    db = tmp_path / "b.sqlite"
    broken = tmp_path / "broken.gpx"
    broken.write_text("<gpx><trk>")
    with pytest.raises(ImportError_, match="not valid GPX"):
        import_file(db, broken)
    foreign = tmp_path / "foreign.csv"
    foreign.write_text("a,b\n1,2\n")
    with pytest.raises(ImportError_, match="expected trackmon CSV columns"):
        import_file(db, foreign)
    empty = tmp_path / "empty.gpx"
    empty.write_text('<gpx xmlns="http://www.topografix.com/GPX/1/1"></gpx>')
    with pytest.raises(ImportError_, match="no track points"):
        import_file(db, empty)
    assert trackmon("import", str(tmp_path / "x.txt"), "--db", str(db)).returncode == 1


def test_points_of_a_session_still_being_written_are_read_from_raw_batches(tmp_path) -> None:
    db = tmp_path / "live.sqlite"
    rec = Recorder(db)
    session = rec.start_session()
    batch = [{"ident": "live", "timestamp": START + i, "position.latitude": 1.0, "position.longitude": 1.0}
             for i in range(5)]
    body = orjson.dumps(batch)
    rec.write_batch(START, "p", len(body), body, normalize_batch(batch, START, body), 1.0)
    conn = sqlite3.connect(db)  # another reader while the recorder still holds the chunk
    assert conn.execute("SELECT count(*) FROM tracks").fetchone()[0] == 0
    assert [p.ts for p in iter_points(conn, PointFilter(session))] == [START + i for i in range(5)]
    conn.close()
    rec.close()


def test_export_command_writes_files_and_stays_quiet_when_piped(fleet_db, tmp_path) -> None:
    db, _ = fleet_db
    out = tmp_path / "cli.gpx"
    result = trackmon("export", "--db", str(db), "--format", "gpx", "-o", str(out))
    assert result.returncode == 0 and "wrote" in result.stderr and "%" not in result.stderr
    assert XSD.validate(etree.parse(str(out)))
    piped = trackmon("export", "--db", str(db), "--format", "csv", "-o", "-")
    assert piped.returncode == 0 and piped.stdout.startswith("ident,name,time_utc") and piped.stderr == ""
    bad = trackmon("export", "--db", str(db), "--format", "gpx", "--session", "99", "-o", str(out))
    assert bad.returncode == 1 and "no session 99" in bad.stderr
    wrong = trackmon("export", "--db", str(db), "--format", "gpx", "--param", "x", "-o", str(out))
    assert wrong.returncode == 2 and "--format csv" in wrong.stderr


def test_where_keeps_only_matching_messages(fleet_db) -> None:
    from app.core.filters import compile_filter
    db, session = fleet_db
    rows = list(csv.DictReader(io.StringIO(export(db, "csv", PointFilter(session),
                                                  where=compile_filter("position.speed > 60")))))
    assert rows and all(float(r["speed_kmh"]) > 60 for r in rows)
    everything = list(csv.DictReader(io.StringIO(export(db, "csv", PointFilter(session)))))
    assert len(rows) == sum(1 for r in everything if r["speed_kmh"] and float(r["speed_kmh"]) > 60)


def test_an_export_to_standard_output_stopped_and_continued_loses_nothing(fleet_db, tmp_path) -> None:
    """`PYTHONUNBUFFERED=1 trackmon export -o - | gzip`, then Ctrl+Z and `fg`: a write into the
    full pipe came back short without an error, and the file had a hole (exit code 0)."""
    db, _ = fleet_db
    out = tmp_path / "whole.csv"
    assert trackmon("export", "--db", str(db), "--format", "csv", "-o", str(out)).returncode == 0
    expected = out.read_bytes()
    assert len(expected) > 3 * 65536  # several times what the pipe holds
    child = subprocess.Popen([sys.executable, "-m", "app", "export", "--db", str(db), "--format", "csv", "-o", "-"],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    piped = bytearray()
    try:
        assert child.stdout is not None
        while chunk := child.stdout.read1(4096):
            piped += chunk
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGSTOP)
                time.sleep(0.001)
                os.kill(child.pid, signal.SIGCONT)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGCONT)
        child.stdout.close()  # type: ignore[union-attr]
        assert child.wait(60) == 0
    assert bytes(piped).replace(b"\r\n", b"\n") == expected.replace(b"\r\n", b"\n")


def test_an_export_to_a_reader_that_leaves_stops_quietly(fleet_db) -> None:
    """`trackmon export -o - | head`: no error that says nothing was written; the shell's 141."""
    db, _ = fleet_db
    child = subprocess.Popen([sys.executable, "-m", "app", "export", "--db", str(db), "--format", "csv", "-o", "-"],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None and child.stderr is not None
    assert child.stdout.read(100).startswith(b"ident,")
    child.stdout.close()
    assert child.wait(60) == 141
    assert child.stderr.read() == b""
    child.stderr.close()
