"""GeoPackage read back through GDAL (pyogrio) and GeoParquet through pyarrow, as QGIS and
DuckDB/pandas users would open them; exports are all or nothing (cancel, failure)."""

from __future__ import annotations

import json
import sqlite3
import struct
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
import pyarrow.parquet as pq
import pyogrio
import pyogrio.raw
import pytest

from app.core.normalize import normalize_batch
from app.store.export_file import export_file
from app.store.exporters import Cancelled
from app.store.points import PointFilter
from app.store.recorder import Recorder
from tests.processes import trackmon

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
IMEI = "356307042441013"
HOSTILE = "=cmd|' /C calc'!A0 <b>bold</b>"


def session_db(tmp_path: Path) -> tuple[Path, int]:
    """An IMEI device with a gap (two segments), a one-fix device with a hostile name, a device
    renamed mid-session, and positions no map can hold (flagged, out of range)."""
    messages = [{"ident": IMEI, "timestamp": START + i * 10, "position.latitude": 48.1 + i / 1e4,
                 "position.longitude": 11.5 + i / 1e4, "position.speed": 36.0, "position.altitude": 500.5,
                 "position.satellites": 9, "position.valid": True, "device.name": "Truck 1"} for i in range(20)]
    messages += [{"ident": IMEI, "timestamp": START + 3600 + i * 10, "position.latitude": 48.2,
                  "position.longitude": 11.6 + i / 1e4, "device.name": "Truck 1 (renamed)"} for i in range(5)]
    messages.append({"ident": "solo", "timestamp": START + 5, "position.latitude": -33.9,
                     "position.longitude": 151.2, "device.name": HOSTILE})
    messages.append({"ident": "bad", "timestamp": START + 6, "position.latitude": 95.0,
                     "position.longitude": 200.0})
    messages.append({"ident": "bad", "timestamp": START + 7, "position.latitude": 0.0, "position.longitude": 0.0})
    db = tmp_path / "geo.sqlite"
    rec = Recorder(db)
    session = rec.start_session("geo")
    body = orjson.dumps(messages)
    rec.write_batch(START, "127.0.0.1", len(body), body, normalize_batch(messages, START, body), 1.0)
    rec.close()
    return db, session


def export(db: Path, fmt: str, target: Path, valid_only: bool = True, **options):
    conn = sqlite3.connect(db)
    try:
        return export_file(conn, fmt, PointFilter(1, valid_only=valid_only), target, **options)
    finally:
        conn.close()


def test_geopackage_reads_in_gdal_with_typed_points_and_track_lines(tmp_path) -> None:
    db, _ = session_db(tmp_path)
    target = tmp_path / "out.gpkg"
    counts = export(db, "gpkg", target)
    assert counts.written == 26 and counts.tracks == 2
    assert sorted(map(tuple, pyogrio.list_layers(target))) == [("points", "Point"), ("tracks", "LineString")]
    info = pyogrio.read_info(target, layer="points")
    types = dict(zip(info["fields"], info["ogr_types"], strict=True))
    assert info["crs"] == "EPSG:4326" and info["features"] == 26
    assert types["ident"] == "OFTString" and types["name"] == "OFTString" and types["time"] == "OFTDateTime"
    assert types["satellites"] == "OFTInteger" and types["speed_kmh"] == "OFTReal"
    meta, _, geometry, fields = pyogrio.raw.read(target, layer="points", datetime_as_string=True)
    rows = [dict(zip(meta["fields"], values, strict=True)) for values in zip(*fields, strict=True)]
    imei = [r for r in rows if r["ident"] == IMEI]
    assert len(imei) == 25 and imei[0]["time"] == "2026-01-01T00:00:00Z"  # GDAL: UTC
    assert imei[0]["name"] == "Truck 1" and imei[-1]["name"] == "Truck 1 (renamed)"  # each message's own
    assert imei[0]["satellites"] == 9 and imei[0]["altitude_m"] == 500.5 and imei[0]["valid"]
    solo = next(r for r in rows if r["ident"] == "solo")
    assert solo["name"] == HOSTILE  # data, as sent: no markup, no formula guard in a GIS file
    first = struct.unpack("<BIdd", geometry[[r["ident"] for r in rows].index("solo")])
    assert first == (1, 1, 151.2, -33.9)  # x = longitude
    assert "bad" not in {r["ident"] for r in rows}  # flagged and impossible positions stay out

    meta, _, lines, fields = pyogrio.raw.read(target, layer="tracks", datetime_as_string=True)
    tracks = [dict(zip(meta["fields"], values, strict=True)) for values in zip(*fields, strict=True)]
    assert [(t["ident"], t["segment"], t["points"]) for t in tracks] == [(IMEI, 1, 20), (IMEI, 2, 5)]
    assert tracks[1]["name"] == "Truck 1 (renamed)" and tracks[1]["start_time"] == "2026-01-01T01:00:00Z"
    assert struct.unpack_from("<BII", lines[0]) == (1, 2, 20)  # the one-fix device draws no line


def test_all_fixes_keeps_flagged_positions_but_never_impossible_ones(tmp_path) -> None:
    db, _ = session_db(tmp_path)
    counts = export(db, "gpkg", tmp_path / "all.gpkg", valid_only=False)
    assert counts.written == 27 and counts.skipped == 1  # 0/0 is kept (flagged), 95/200 is not
    _, _, _, fields = pyogrio.raw.read(tmp_path / "all.gpkg", layer="points", columns=["ident", "flags"])
    assert list(fields[1][fields[0] == "bad"]) != [0]


def test_geoparquet_has_geo_metadata_wkb_points_and_real_types(tmp_path) -> None:
    db, _ = session_db(tmp_path)
    target = tmp_path / "out.parquet"
    counts = export(db, "geoparquet", target)
    assert counts.written == 26
    geo = json.loads(pq.read_metadata(target).metadata[b"geo"])
    column = geo["columns"]["geometry"]
    assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry"
    assert column["encoding"] == "WKB" and column["geometry_types"] == ["Point"]
    assert "crs" not in column  # absent = OGC:CRS84 (longitude, latitude) by the specification
    assert column["bbox"] == [11.5, -33.9, 151.2, 48.2]
    table = pq.read_table(target)
    assert str(table.schema.field("ident").type) == "string"
    assert str(table.schema.field("time").type) == "timestamp[ms, tz=UTC]"
    rows = table.to_pylist()
    assert [r["time"] for r in rows] == sorted(r["time"] for r in rows)  # time order across devices
    first = rows[0]
    assert first["ident"] == IMEI and first["time"] == datetime(2026, 1, 1, tzinfo=UTC)
    assert struct.unpack("<BIdd", first["geometry"]) == (1, 1, 11.5, 48.1)
    solo = next(r for r in rows if r["ident"] == "solo")
    assert solo["name"] == HOSTILE and solo["satellites"] is None and solo["valid"] is None
    lon = np.array([struct.unpack("<BIdd", r["geometry"])[2] for r in rows])
    assert (np.abs(lon) <= 180).all()


def large_db(tmp_path: Path) -> Path:
    """30,000 fixes of 30 devices: the export is polled for a cancel every few thousand points."""
    db = tmp_path / "large.sqlite"
    rec = Recorder(db)
    rec.start_session("large")
    for b in range(30):
        batch = [{"ident": f"{IMEI[:-2]}{i % 30:02d}", "timestamp": START + b * 100 + i / 10,
                  "position.latitude": 48.0 + i / 1e4, "position.longitude": 11.0 + b / 1e3} for i in range(1000)]
        body = orjson.dumps(batch)
        rec.write_batch(START + b, "127.0.0.1", len(body), body, normalize_batch(batch, START + b, body), 1.0)
    rec.close()
    return db


@pytest.mark.parametrize("fmt", ["gpkg", "geoparquet", "csv", "gpx"])
def test_a_cancelled_export_leaves_nothing_and_keeps_an_older_file(tmp_path, fmt) -> None:
    db = large_db(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    target = out / f"export.{fmt}"
    target.write_text("an older export")
    polls = []

    def cancelled() -> bool:
        polls.append(1)
        return len(polls) == 2  # after a few thousand points are written

    with pytest.raises(Cancelled):
        export(db, fmt, target, cancelled=cancelled)
    assert sorted(p.name for p in out.iterdir()) == [target.name] and target.read_text() == "an older export"
    assert export(db, fmt, target).written == 30_000  # and the same export, not cancelled, replaces it
    assert sorted(p.name for p in out.iterdir()) == sorted({target.name, "export.csvt"} if fmt == "csv"
                                                           else {target.name})


@pytest.mark.parametrize("fmt", ["gpkg", "geoparquet", "kml"])
def test_a_failed_export_leaves_nothing(tmp_path, fmt) -> None:
    db, _ = session_db(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    seen = []

    def failing(params: dict) -> bool:
        seen.append(params)
        if len(seen) == 10:
            raise ValueError("the disk went away")
        return True

    with pytest.raises(ValueError, match="disk went away"):
        export(db, fmt, out / f"x.{fmt}", where=failing)
    assert list(out.iterdir()) == []


def test_export_command_writes_geopackage_and_refuses_standard_output(tmp_path) -> None:
    db, _ = session_db(tmp_path)
    target = tmp_path / "cli.gpkg"
    result = trackmon("export", "--db", str(db), "--format", "gpkg", "-o", str(target))
    assert result.returncode == 0, result.stderr
    assert "wrote 26 points and 2 track lines" in result.stderr
    assert pyogrio.read_info(target, layer="points")["features"] == 26
    refused = trackmon("export", "--db", str(db), "--format", "geoparquet", "-o", "-")
    assert refused.returncode == 2 and "give -o PATH" in refused.stderr
