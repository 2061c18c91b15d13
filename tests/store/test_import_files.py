"""Imports keep every point of files shaped like other tools write them, all or nothing, and say
what they imported and what they did not. Files are made by the tests themselves."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from app.core.normalize import NO_TIMESTAMP
from app.store.importers import BATCH, ImportError_, file_batches, file_digest, import_file
from app.store.points import PointFilter, iter_points
from app.store.queries import iter_messages, latest_session_id, list_sessions
from app.store.recorder import IMPORTING, Recorder
from tests.processes import trackmon

GPX_HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n<gpx version="1.1" creator="test" '
            'xmlns="http://www.topografix.com/GPX/1/1" '
            'xmlns:gpxtpx="http://www.garmin.com/xmlschemas/TrackPointExtension/v1">\n')
START = 1_746_079_200  # 2025-05-01T06:00:00Z


def trkpts(n: int, first: int = 0) -> str:
    return "".join(f'<trkpt lat="{48 + (first + i) / 1e5:.5f}" lon="11.5"><time>'
                   f"{_iso(START + first + i)}</time></trkpt>\n" for i in range(n))


def _iso(ts: int) -> str:
    import time
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def gpx_file(path: Path, body: str) -> Path:
    path.write_text(GPX_HEAD + body + "</gpx>\n", encoding="utf-8")
    return path


def track(name: str, points: str) -> str:
    return f"<trk><name>{name}</name><trkseg>\n{points}</trkseg></trk>\n"


def session_points(db: Path, session: int) -> list:
    conn = sqlite3.connect(db)
    try:
        return list(iter_points(conn, PointFilter(session)))
    finally:
        conn.close()


def session_ids(db: Path) -> list[int]:
    conn = sqlite3.connect(db)
    try:
        return [s.id for s in list_sessions(conn)]
    finally:
        conn.close()


def test_a_longer_recording_after_its_first_part_and_repeated_segments_keep_every_point(tmp_path) -> None:
    db = tmp_path / "r.sqlite"
    first = import_file(db, gpx_file(tmp_path / "part.gpx", track("ride", trkpts(1000))))
    longer = import_file(db, gpx_file(tmp_path / "whole.gpx", track("ride", trkpts(2500))))
    assert first.points == 1000 and longer.points == 2500
    assert len(session_points(db, longer.session_id)) == 2500
    segment = trkpts(1000)
    repeated = import_file(db, gpx_file(tmp_path / "repeat.gpx", track("ride", segment + segment + segment)))
    assert repeated.points == 3000 and len(session_points(db, repeated.session_id)) == 3000
    with pytest.raises(ImportError_, match=r"already imported .*session 2"):
        import_file(db, tmp_path / "whole.gpx")
    assert session_ids(db) == [1, 2, 3]


def test_a_failed_import_leaves_nothing_and_never_is_the_most_recent_session(tmp_path) -> None:
    db = tmp_path / "f.sqlite"
    kept = import_file(db, gpx_file(tmp_path / "ok.gpx", track("ok", trkpts(10))))
    truncated = tmp_path / "truncated.gpx"
    truncated.write_text(GPX_HEAD + "<trk><name>cut</name><trkseg>\n" + trkpts(3 * BATCH + 10)[:-40])
    with pytest.raises(ImportError_, match="not valid GPX"):
        import_file(db, truncated)
    bad_row = tmp_path / "bad.csv"
    rows = "".join(f'"d",,2026-01-01T00:00:{i % 60:02d}Z,,1.0,2.0,,,,,,,0\n' for i in range(BATCH + 5))
    bad_row.write_text("ident,name,time_utc,server_time_utc,latitude,longitude,altitude,speed_kmh,direction,"
                       "satellites,hdop,valid,flags\n" + rows + '"d",,yesterday,,1.0,2.0,,,,,,,0\n')
    with pytest.raises(ImportError_, match=rf"line {BATCH + 7}: unreadable time"):
        import_file(db, bad_row)
    with pytest.raises(ImportError_, match=r"reads \.gpx and \.csv"):
        import_file(db, tmp_path / "x.kml")
    conn = sqlite3.connect(db)
    assert [s.id for s in list_sessions(conn)] == [kept.session_id] == [latest_session_id(conn)]
    assert conn.execute("SELECT count(*) FROM batches").fetchone()[0] == 1
    assert conn.execute("SELECT count(DISTINCT session_id) FROM tracks").fetchone()[0] == 1
    conn.close()

    # While an import runs, its session is not "the most recent" for `export` and friends.
    seen: list[int | None] = []

    def batches():
        for batch in file_batches(gpx_file(tmp_path / "slow.gpx", track("slow", trkpts(2 * BATCH)))):
            reader = sqlite3.connect(db)
            seen.append(latest_session_id(reader))
            reader.close()
            yield batch

    rec = Recorder(db)
    try:
        session, count = rec.import_session("slow", batches(), b"slow-file")
    finally:
        rec.close()
    assert seen == [kept.session_id, kept.session_id] and count == 2 * BATCH
    assert session_ids(db) == [kept.session_id, session]


def test_a_session_left_half_imported_by_a_crash_is_removed_on_open(tmp_path) -> None:
    db = tmp_path / "c.sqlite"
    import_file(db, gpx_file(tmp_path / "ok.gpx", track("ok", trkpts(5))))
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO sessions (name, started_at, indexed_batch) VALUES ('half', 0, ?)", (IMPORTING,))
    conn.execute("INSERT INTO batches (session_id, received_at, peer, wire_bytes, count, flagged, digest, body) "
                 "SELECT 2, received_at, peer, wire_bytes, count, flagged, x'00', body FROM batches")
    conn.commit()
    assert latest_session_id(conn) == 1
    conn.close()
    Recorder(db).close()
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM sessions").fetchone()[0] == 1
    assert conn.execute("SELECT count(*) FROM batches WHERE session_id = 2").fetchone()[0] == 0
    conn.close()


def test_every_rfc3339_time_form_is_read_and_untimed_points_are_kept_flagged_and_counted(tmp_path) -> None:
    times = ["2025-05-01T06:00:00Z", "2025-05-01t06:00:01z", "2025-05-01T08:00:02+02:00",
             "2025-05-01 06:00:03.250Z", "20250501T060004Z", "2025-06-30T23:59:60Z", "2025-05-01T06:00:05.123456789Z",
             "2025-05-01T01:00:06-05:00"]
    points = "".join(f'<trkpt lat="48.{i}" lon="11.5"><time>{t}</time></trkpt>\n' for i, t in enumerate(times))
    points += '<trkpt lat="48.9" lon="11.5"></trkpt>\n<trkpt lat="48.95" lon="11.5"><time>soon</time></trkpt>\n'
    db = tmp_path / "t.sqlite"
    summary = import_file(db, gpx_file(tmp_path / "times.gpx", track("clock", points)))
    assert summary.points == 10 and summary.untimed == 1 and summary.unreadable_time == 1
    assert summary.leap_seconds == 1 and "leap second" in summary.text() and "without a usable time" in summary.text()
    conn = sqlite3.connect(db)
    messages = [m.message for m in iter_messages(conn, summary.session_id)]
    conn.close()
    stamps = [m.ts - START for m in messages[:8]]
    assert stamps[:5] == [0, 1, 2, 3.25, 4] and stamps[6] == pytest.approx(5.123456789) and stamps[7] == 6
    assert messages[5].ts == 1_751_328_000  # 2025-07-01T00:00:00Z, the instant after 23:59:59
    assert all(not m.flags & NO_TIMESTAMP for m in messages[:8])
    assert [bool(m.flags & NO_TIMESTAMP) for m in messages[8:]] == [True, True]
    assert messages[9].params["gpx.time"] == "soon"


GARMIN = """<trk><name>  Morning  ride </name><trkseg>
<trkpt lat="48.1" lon="11.5"><ele>520.5</ele><time>2025-05-01T06:00:00Z</time><extensions>
<gpxtpx:TrackPointExtension><gpxtpx:atemp>21.5</gpxtpx:atemp><gpxtpx:hr>142</gpxtpx:hr><gpxtpx:cad>88</gpxtpx:cad>
<gpxtpx:speed>5</gpxtpx:speed></gpxtpx:TrackPointExtension><power>250</power></extensions></trkpt>
<trkpt lat="48.2" lon="11.6"><time>2025-05-01T06:00:10Z</time></trkpt>
</trkseg></trk>
<trk><name>  Morning  ride </name><trkseg><trkpt lat="47" lon="11"><time>2025-05-02T06:00:00Z</time></trkpt>
<trkpt lat="47.1" lon="11"><time>2025-05-02T06:00:05Z</time></trkpt></trkseg></trk>
"""
ROUTE = ('<rte><name>Plan</name><rtept lat="48.0" lon="11.0"><name>A</name></rtept>'
         '<rtept lat="48.1" lon="11.1"><name>B</name></rtept></rte>\n')
WAYPOINTS = ('<wpt lat="48.3" lon="11.7"><name>Hut</name><sym>Lodge</sym><time>2025-05-01T05:00:00Z</time></wpt>\n'
             '<wpt lat="48.4" lon="11.8"><name>Lake</name></wpt>\n')


def test_routes_waypoints_extensions_and_same_named_tracks_are_imported_and_summarised(tmp_path) -> None:
    db = tmp_path / "g.sqlite"
    summary = import_file(db, gpx_file(tmp_path / "garmin.gpx", WAYPOINTS + GARMIN + ROUTE))
    assert (summary.tracks, summary.track_points, summary.routes, summary.route_points, summary.waypoints) == \
        (2, 4, 1, 2, 2)
    assert summary.renamed == [("  Morning  ride ", "  Morning  ride  (2)")]
    points = session_points(db, summary.session_id)
    devices = {p.ident for p in points}
    assert devices == {"  Morning  ride ", "  Morning  ride  (2)", "Plan", "Hut", "Lake"}
    conn = sqlite3.connect(db)
    params = [m.message.params for m in iter_messages(conn, summary.session_id)]
    conn.close()
    garmin = next(p for p in params if p.get("gpx.hr") is not None)
    assert (garmin["gpx.hr"], garmin["gpx.cad"], garmin["gpx.atemp"], garmin["gpx.power"]) == (142, 88, 21.5, 250)
    assert garmin["position.speed"] == 18.0 and garmin["position.altitude"] == 520.5
    hut = next(p for p in params if p["ident"] == "Hut")
    assert hut["gpx.kind"] == "waypoint" and hut["gpx.sym"] == "Lodge"
    text = summary.text()
    assert "2 route points in 1 route" in text and "2 waypoint(s)" in text and "kept apart" in text
    routes_only = import_file(db, gpx_file(tmp_path / "route.gpx", ROUTE))
    assert routes_only.route_points == 2
    cli = trackmon("import", str(gpx_file(tmp_path / "cli.gpx", WAYPOINTS + ROUTE)), "--db", str(db))
    assert cli.returncode == 0 and "2 waypoint(s)" in cli.stdout and "route points" in cli.stdout


CSV_HEADER = ("ident,name,time_utc,server_time_utc,latitude,longitude,altitude,speed_kmh,direction,satellites,"
              "hdop,valid,flags")


def test_csv_files_from_excel_huge_cells_missing_times_and_broken_quotes(tmp_path) -> None:
    db = tmp_path / "c.sqlite"
    excel = tmp_path / "excel.csv"
    excel.write_bytes(b"\xef\xbb\xbf" + (CSV_HEADER + ",note\n" + '"\'=x",,2026-01-01T00:00:00Z,,1.5,2.5,,,,,,,0,"'
                                         + "y" * 200_000 + '"\n').encode())
    summary = import_file(db, excel)
    conn = sqlite3.connect(db)
    message = next(iter_messages(conn, summary.session_id)).message
    conn.close()
    assert summary.rows == 1 and message.ident == "=x" and len(message.params["note"]) == 200_000
    timeless = tmp_path / "timeless.csv"
    timeless.write_text("ident,latitude,longitude\nd,1,2\n")
    with pytest.raises(ImportError_, match="no time column"):
        import_file(db, timeless)
    unterminated = tmp_path / "quote.csv"
    unterminated.write_text(CSV_HEADER + '\n"d",,2026-01-01T00:00:00Z,,1,2,,,,,,,0\n"d,"oops,2026-01-01T00:00:01Z')
    with pytest.raises(ImportError_, match=r"quote|line"):
        import_file(db, unterminated)
    short = tmp_path / "short.csv"
    short.write_text(CSV_HEADER + '\n"d",,2026-01-01T00:00:00Z,,1,2\n')
    with pytest.raises(ImportError_, match="line 2: 6 cells where the header has 13"):
        import_file(db, short)
    assert session_ids(db) == [summary.session_id]


def test_file_digest_names_the_content_not_the_path(tmp_path) -> None:
    a = gpx_file(tmp_path / "a.gpx", track("x", trkpts(3)))
    b = tmp_path / "b.gpx"
    b.write_bytes(a.read_bytes())
    assert file_digest(a) == file_digest(b) != file_digest(gpx_file(tmp_path / "c.gpx", track("x", trkpts(4))))


def test_both_csv_profiles_and_guarded_names_import_back_as_they_were(tmp_path) -> None:
    import io

    import orjson

    from app.core.normalize import normalize_batch
    from app.store.exporters import run_export
    db = tmp_path / "p.sqlite"
    rec = Recorder(db)
    rec.start_session()
    batch = [{"ident": "=car", "device.name": "@boss", "timestamp": START + i, "position.latitude": 48.0 + i / 1e4,
              "position.longitude": 11.0, "position.speed": 36.0, "position.direction": 90.0} for i in range(3)]
    body = orjson.dumps(batch)
    rec.write_batch(START, "p", len(body), body, normalize_batch(batch, START, body), 1.0)
    rec.close()
    for profile in ("trackmon", "gis"):
        out = io.StringIO()
        conn = sqlite3.connect(db)
        run_export(conn, "csv", PointFilter(1), out, csv_profile=profile)
        conn.close()
        path = tmp_path / f"{profile}.csv"
        path.write_text(out.getvalue())
        summary = import_file(db, path)
        points = session_points(db, summary.session_id)
        assert [(p.ident, p.name, p.speed, p.direction) for p in points] == [("=car", "@boss", 36.0, 90.0)] * 3
        assert [p.ts for p in points] == [START + i for i in range(3)]
